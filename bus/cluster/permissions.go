package cluster

// Permissions are the subjects a host publishes to for ownership and
// shared snapshots: the KV bucket OwnersBucket (leases, and the watch a
// standby keeps on the stream's key), the Object Store SnapshotsBucket
// (put, get, list, prune), listing the events stream's consumers (a
// new owner deletes the durables of the one before), and the internal
// requests to the owners of partitions run elsewhere (InternalPrefix).
// The NATS user segd runs as needs them besides its other permissions
// (docs/security.md); to answer internal requests it also subscribes to
// InternalPrefix + ">" and publishes to its own inboxes (a reply in
// chunks is several messages to one inbox).
func Permissions(eventsStream string) []string {
	kv, obj := "KV_"+OwnersBucket, "OBJ_"+SnapshotsBucket
	return []string{
		"$JS.API.STREAM.CREATE." + kv, "$JS.API.STREAM.UPDATE." + kv, "$JS.API.STREAM.INFO." + kv,
		"$JS.API.STREAM.MSG.GET." + kv, "$JS.API.DIRECT.GET." + kv + ".>",
		"$KV." + OwnersBucket + ".>",
		"$JS.API.CONSUMER.CREATE." + kv + ".>", "$JS.API.CONSUMER.DELETE." + kv + ".*",
		"$JS.API.CONSUMER.INFO." + kv + ".*", "$JS.FC." + kv + ".>",
		"$JS.API.STREAM.CREATE." + obj, "$JS.API.STREAM.UPDATE." + obj, "$JS.API.STREAM.INFO." + obj,
		"$JS.API.STREAM.MSG.GET." + obj, "$JS.API.DIRECT.GET." + obj + ".>",
		"$JS.API.STREAM.PURGE." + obj,
		"$O." + SnapshotsBucket + ".>",
		"$JS.API.CONSUMER.CREATE." + obj + ".>", "$JS.API.CONSUMER.DELETE." + obj + ".*",
		"$JS.API.CONSUMER.INFO." + obj + ".*", "$JS.FC." + obj + ".>",
		"$JS.API.CONSUMER.NAMES." + eventsStream,
		InternalPrefix + ">",
	}
}
