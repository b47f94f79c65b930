// Package capture copies the SIP messages pinhole receives and sends to
// Homer-style collectors as HEP v3 packets (docs/capture.md).
//
// The SIP paths call a [Tap] for every message; the tap decides by the
// message's Call-ID whether the call is sampled, encodes the message into a
// buffer of the collector's own bounded pool and queues it for the
// collector's sender goroutine. Nothing on the SIP path waits: when a
// collector's buffers are all queued (the collector is slow or gone), the
// message is dropped and counted. A nil *Tap captures nothing and costs one
// comparison, which is what the paths hold while capture is off.
package capture
