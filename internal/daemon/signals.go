package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext is the mains' context: cancelled by SIGTERM or SIGINT (which
// drain). SIGHUP and SIGPIPE are ignored from the first instruction on, so
// that neither kills the daemon before HandleSignals takes them over.
func SignalContext() (context.Context, context.CancelFunc) {
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// HandleSignals makes SIGHUP and SIGPIPE harmless for the daemon's whole
// life, drain included: SIGHUP (systemd reload, logrotate, a closed
// terminal) is logged and ignored — there is no configuration to reload —
// and a broken pipe on stdout or stderr becomes a write error instead of
// ending the process. stop ends the logging; the signals stay ignored.
func HandleSignals(log *slog.Logger) (stop func()) { return HandleSignalsReload(log, nil) }

// HandleSignalsReload is HandleSignals where SIGHUP calls reload (when not
// nil) instead of only being logged: the gateway re-reads its TLS
// certificate.
func HandleSignalsReload(log *slog.Logger, reload func()) (stop func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGPIPE)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case s := <-ch:
				switch {
				case s == syscall.SIGHUP && reload != nil:
					reload()
				case s == syscall.SIGHUP:
					log.Warn("SIGHUP received and ignored: nothing to reload (SIGTERM or SIGINT stops the daemon)")
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
		signal.Stop(ch)
		close(done)
		<-exited
	}
}
