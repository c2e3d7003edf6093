// Package host is segd's composition root: it loads the rules, starts or
// connects to NATS, runs the engine, feeds it from the events stream and
// serves membership, and shuts all of it down in order.
//
// The engine itself lives in host/engine; host wires it to bus and rules and
// holds no segmentation logic of its own.
package host
