// Command abi2 claims ABI major 2, without the SDK.
package main

//go:wasmexport segd_abi_version
func abiVersion() uint32 { return 2 << 16 }

//go:wasmexport segd_kinds
func kinds() uint32 { return 1 }

//go:wasmexport segd_alloc
func alloc(n uint32) uint32 { return 0 }

//go:wasmexport segd_init
func initParams(p, n uint32) int32 { return 0 }

//go:wasmexport segd_match
func match(p, n, out uint32) int32 { return 0 }

//go:wasmexport segd_error
func errMsg() uint64 { return 0 }

func main() {}
