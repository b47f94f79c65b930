// Package sdp reads and writes SDP bodies (RFC 8866) as a structure, so
// that pinhole can judge an offer or answer — is it WebRTC, does it name a
// private address, is it well formed — without editing text.
//
// A [Session] keeps every line it was given, in order: the typed parts
// pinhole needs (the m= line of each media section, the origin, connection
// and attributes) are read through methods, and lines it has no use for
// are printed back unchanged. rtpengine rewrites the SDP itself in its
// offer and answer commands; pinhole only reads it.
//
// [Parse] takes CRLF or bare LF line ends; [Session.Marshal] writes CRLF,
// as RFC 8866 §5 asks. Input that is not SDP gives an error wrapping
// [ErrMalformed] with the line number, for a 400 or 488 answer.
package sdp
