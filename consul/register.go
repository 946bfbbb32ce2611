package consul

import (
	"context"
	"fmt"

	"github.com/hashicorp/consul/api"
)

// Registration is a daemon's service in Consul's catalog.
type Registration struct {
	Consul   string // Consul's HTTP address; "" for CONSUL_HTTP_ADDR
	Name, ID string
	Address  string // "" for the node's address
	Port     int
	Meta     map[string]string
	CheckURL string // an HTTP check (the admin port's /readyz)
}

// Register adds the service with its HTTP check to the local agent; the
// function it returns removes it.
func Register(ctx context.Context, r Registration) (deregister func() error, err error) {
	conf := api.DefaultConfig()
	if r.Consul != "" {
		conf.Address = r.Consul
	}
	c, err := api.NewClient(conf)
	if err != nil {
		return nil, err
	}
	reg := &api.AgentServiceRegistration{ID: r.ID, Name: r.Name, Address: r.Address, Port: r.Port, Meta: r.Meta}
	if r.CheckURL != "" {
		reg.Check = &api.AgentServiceCheck{CheckID: r.ID + "-ready", Name: r.Name + " ready", HTTP: r.CheckURL, Interval: "5s", Timeout: "2s",
			DeregisterCriticalServiceAfter: "30m"}
	}
	opts := api.ServiceRegisterOpts{}.WithContext(ctx)
	if err := c.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return nil, fmt.Errorf("consul: registering %s: %w", r.ID, err)
	}
	return func() error { return c.Agent().ServiceDeregister(r.ID) }, nil
}
