// Package cluster holds the building blocks for running segd on several
// hosts against one NATS cluster, on NATS itself and no coordinator of its
// own:
//
//   - Owner: which host owns which partition, as leases in the KV bucket
//     SEGD_OWNERS (create = acquire, update with the expected revision =
//     renew, per-key TTL expiry = loss), with a fair share per live host.
//   - SnapshotStore: partition snapshots in the Object Store bucket
//     SEGD_SNAPSHOTS under p<N>of<P>/<seq>, readable by every host.
//
// The package knows nothing of segments or engines: the host plugs its
// writers into the lease callbacks and its snapshot files into the store.
package cluster
