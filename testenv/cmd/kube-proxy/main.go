// Command kube-proxy is the upstream kube-proxy, built from the
// k8s.io/kubernetes Go module like the rest of the control plane. The
// data-plane tests run it in nftables (and iptables) mode inside a network
// namespace that plays a node, to prove that a ClusterIP routes to the
// healthy external hosts only.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
