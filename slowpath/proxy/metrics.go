package proxy

import "github.com/VictoriaMetrics/metrics"

// Counters of the proxy, listed in docs/proxy.md. They are bumped once per
// request or branch in the slow path, never per packet.
var (
	mInitial     = metrics.NewCounter(`pinhole_proxy_requests_total{kind="initial"}`)
	mDialog      = metrics.NewCounter(`pinhole_proxy_requests_total{kind="dialog"}`)
	mAckRelayed  = metrics.NewCounter(`pinhole_proxy_acks_relayed_total`)
	mAckDropped  = metrics.NewCounter(`pinhole_proxy_acks_dropped_total`)
	mBranches    = metrics.NewCounter(`pinhole_proxy_branches_total`)
	mBranchErr   = metrics.NewCounter(`pinhole_proxy_branch_errors_total`)
	mTimerC      = metrics.NewCounter(`pinhole_proxy_timer_c_total`)
	mCancels     = metrics.NewCounter(`pinhole_proxy_cancels_sent_total`)
	mFlowBad     = metrics.NewCounter(`pinhole_proxy_flow_param_errors_total`)
	mNoListener  = metrics.NewCounter(`pinhole_proxy_no_listener_total`)
	mUnresolved  = metrics.NewCounter(`pinhole_proxy_outbound_unresolved_total`)
	mBadBinding  = metrics.NewCounter(`pinhole_proxy_bad_bindings_total`)
	mAuthFailed  = metrics.NewCounter(`pinhole_proxy_auth_rejected_total`)
	mRelayFailed = metrics.NewCounter(`pinhole_proxy_relay_errors_total`)
	// mFlowFailed: requests, or branches, not sent because the device's
	// connection is closed (flowfail.go).
	mFlowFailed = metrics.NewCounter(`pinhole_proxy_flow_failed_total`)

	mReplies = map[int]*metrics.Counter{
		200: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="200"}`),
		403: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="403"}`),
		404: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="404"}`),
		407: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="407"}`),
		430: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="430"}`),
		480: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="480"}`),
		481: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="481"}`),
		483: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="483"}`),
		500: metrics.NewCounter(`pinhole_proxy_local_replies_total{status="500"}`),
	}
	mRepliesOther = metrics.NewCounter(`pinhole_proxy_local_replies_total{status="other"}`)

	// Farm (farm.go, docs/dispatch.md).
	mSticky   = metrics.NewCounter(`pinhole_dispatch_challenge_sticky_total`)
	mHidden   = metrics.NewCounter(`pinhole_dispatch_topology_hidden_total`)
	mSilent   = metrics.NewCounter(`pinhole_dispatch_silent_destinations_total`)
	mOversize = [...]*metrics.Counter{
		oversizeStripped: metrics.NewCounter(`pinhole_dispatch_oversize_total{action="stripped"}`),
		oversizeCompact:  metrics.NewCounter(`pinhole_dispatch_oversize_total{action="compact"}`),
		oversizeTCP:      metrics.NewCounter(`pinhole_dispatch_oversize_total{action="tcp"}`),
		oversizeSent:     metrics.NewCounter(`pinhole_dispatch_oversize_total{action="sent_anyway"}`),
	}

	// Indexed by status class 1..6.
	mRelayed = [7]*metrics.Counter{
		1: metrics.NewCounter(`pinhole_proxy_responses_relayed_total{class="1xx"}`),
		2: metrics.NewCounter(`pinhole_proxy_responses_relayed_total{class="2xx"}`),
		3: metrics.NewCounter(`pinhole_proxy_responses_relayed_total{class="3xx"}`),
		4: metrics.NewCounter(`pinhole_proxy_responses_relayed_total{class="4xx"}`),
		5: metrics.NewCounter(`pinhole_proxy_responses_relayed_total{class="5xx"}`),
		6: metrics.NewCounter(`pinhole_proxy_responses_relayed_total{class="6xx"}`),
	}
)

func countReply(status int) {
	if c, ok := mReplies[status]; ok {
		c.Inc()
		return
	}
	mRepliesOther.Inc()
}

func countRelayed(status int) {
	if cl := status / 100; cl >= 1 && cl <= 6 {
		mRelayed[cl].Inc()
	}
}
