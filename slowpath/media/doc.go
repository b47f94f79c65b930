// Package media decides whether a call's media goes through rtpengine and
// with which ng options, from what the proxy knows of both sides: their
// SIP transport, whether their signalling came through a NAT, and their
// SDP (docs/media.md).
//
// [Decide] is a pure function of the configured rules and the two sides,
// so that every combination is a row of a table test. The client that
// sends the commands is slowpath/media/ng; the SDP reader is
// slowpath/media/sdp. Wiring both into the proxy's INVITE path is a later
// step of issue 19 (docs/media.md, "Status").
package media
