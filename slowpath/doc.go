// Package slowpath wires pinhole's full SIP server: sipgo's transports and
// transactions, the registrar, the proxy, authentication and the location
// store. Everything the fast paths do not answer ends here.
package slowpath
