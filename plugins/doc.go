// Package plugins runs WASM plugin predicates: segment conditions written in
// any language that compiles to WebAssembly and implements ABI v1
// (sdk/ABI.md).
//
// A Registry loads plugins from a directory (LoadDir: NAME.wasm, each with an
// optional manifest NAME.yaml or NAME.json), validates them (size, imports,
// exports, ABI major), compiles each module version once with wazero's
// compiler and an on-disk compilation cache, and implements rules.Plugins:
// EventPredicate and ProfilePredicate return predicates that judge a whole
// batch in one guest call, through a bounded pool of warm instances per
// plugin version and parameter set.
//
// Every instance runs in a sandbox: no files, network, environment or
// arguments; a fake clock and deterministic randomness (the host hands the
// batch's "now" in); a memory limit and a per-batch deadline from the
// manifest. A trap, timeout or out-of-memory discards the instance and the
// batch is retried once on a fresh one; a plugin whose batches keep failing is
// marked failed (Registry.Status) and fails fast until a probe batch succeeds
// or a new version is loaded (Registry.Load swaps versions atomically).
//
// The package knows nothing of NATS or of the host engine.
package plugins
