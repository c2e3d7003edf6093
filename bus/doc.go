// Package bus is all of segd's NATS: the embedded server, the JetStream
// streams and consumers, the wire codecs, and the micro service whose thin
// handlers answer membership requests.
//
// bus holds no segment state. It declares the small interfaces it needs
// (Ingester, Membership) and the host implements them, as net/http declares
// Handler.
package bus
