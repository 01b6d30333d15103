package state

import "slices"

// Equal reports whether two service ports are the same in every field (the
// affinity timeout as Timeout defaults it): the one comparison the
// datapaths use to find the service ports a sync must rewrite. A datapath
// that does not program some field (an endpoint's pod name, the IPVS
// scheduler) rewrites that port's rules when only that field changed, and
// writes the same rules again.
func (s *ServicePort) Equal(o *ServicePort) bool {
	return s.Namespace == o.Namespace && s.Name == o.Name && s.PortName == o.PortName &&
		s.Protocol == o.Protocol && s.ClusterIP == o.ClusterIP && s.Port == o.Port &&
		s.NodePort == o.NodePort && slices.Equal(s.ExternalIPs, o.ExternalIPs) &&
		s.SessionAffinity == o.SessionAffinity && s.Timeout() == o.Timeout() &&
		s.Scheduler == o.Scheduler && s.Type == o.Type &&
		s.ExternalTrafficPolicy == o.ExternalTrafficPolicy && s.InternalTrafficPolicy == o.InternalTrafficPolicy &&
		slices.Equal(s.LoadBalancerIPs, o.LoadBalancerIPs) &&
		slices.Equal(s.LoadBalancerSourceRanges, o.LoadBalancerSourceRanges) &&
		s.HealthCheckNodePort == o.HealthCheckNodePort &&
		slices.Equal(s.Endpoints, o.Endpoints) && slices.Equal(s.NotReadyEndpoints, o.NotReadyEndpoints)
}
