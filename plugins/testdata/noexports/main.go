// Command noexports has only some of the ABI exports.
package main

//go:wasmexport segd_abi_version
func abiVersion() uint32 { return 1 << 16 }

//go:wasmexport segd_match
func match(p, n uint32) int32 { return 0 }

func main() {}
