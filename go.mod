module github.com/polymur/polymur

go 1.26.8

require (
	github.com/jamiealquiza/envy v1.1.0
	github.com/jamiealquiza/tachymeter v2.0.0+incompatible
	golang.org/x/sync v0.22.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.1.0 // indirect
)
