package dhcp

import (
	"fmt"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	received      *prometheus.CounterVec // by message type
	sent          *prometheus.CounterVec // by message type
	dropped       *prometheus.CounterVec // by reason
	persistErrors prometheus.Counter
	declines      *prometheus.CounterVec // by outcome
	probes        *prometheus.CounterVec // by result
	otherRouter   prometheus.Gauge       // 1 while another IPv6 router counts as present

	// The per-packet counters, resolved once (a label lookup per packet
	// costs more than the increment): index = message type, 0 = OTHER.
	receivedByType, sentByType [dhcpv4.MessageTypeInform + 1]prometheus.Counter
}

// byType returns the counter of message type t from a resolved table.
func byType(tab *[dhcpv4.MessageTypeInform + 1]prometheus.Counter, t dhcpv4.MessageType) prometheus.Counter {
	if t < dhcpv4.MessageTypeDiscover || t > dhcpv4.MessageTypeInform {
		t = 0
	}
	return tab[t]
}

func newMetrics(reg prometheus.Registerer, inUse func() int) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_dhcp_packets_received_total",
			Help: "DHCP requests received and parsed, by message type; also IPv6 ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT (another router's) and ROUTER_ADVERTISEMENT_EMPTY (one announcing nothing, e.g. another wwserver's) heard on dhcp.interface.",
		}, []string{"type"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_dhcp_replies_sent_total",
			Help: "DHCP replies sent, by message type; also IPv6 ROUTER_ADVERTISEMENT and ROUTER_SOLICITATION (one at start in auto mode).",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_dhcp_dropped_total",
			Help: "DHCP packets not answered, by reason (malformed, queue_full, panic, unknown_mac, non_unicast_mac, ...; ra_other_router: a router solicitation left to another IPv6 router).",
		}, []string{"reason"}),
		declines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_dhcp_declines_total",
			Help: "DHCPDECLINEs by outcome: quarantined, reservation_kept (a nodes.toml address is never given up), quarantine_full, unknown_lease.",
		}, []string{"outcome"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_dhcp_probes_total",
			Help: "ARP probes of pool addresses (made while the lease table is not trusted), by result: free, in_use, error.",
		}, []string{"result"}),
		otherRouter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wwserver_dhcp_ipv6_other_router",
			Help: "1 while another IPv6 router counts as present on dhcp.interface (it advertised within its hold time); with answer_router_solicitations = auto, solicitations are then left to it.",
		}),
		persistErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_dhcp_lease_persist_errors_total",
			Help: "Failed writes of the lease journal or leases.json.",
		}),
	}
	inUseGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wwserver_dhcp_leases_in_use",
		Help: "Active (offered or bound) DHCP leases.",
	}, func() float64 { return float64(inUse()) })
	for t := range m.receivedByType {
		label := typeLabel(dhcpv4.MessageType(t))
		m.receivedByType[t] = m.received.WithLabelValues(label)
		m.sentByType[t] = m.sent.WithLabelValues(label)
	}
	for _, c := range []prometheus.Collector{m.received, m.sent, m.dropped, m.persistErrors, m.declines, m.probes, m.otherRouter, inUseGauge} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dhcp: register metrics: %w", err)
		}
	}
	return m, nil
}
