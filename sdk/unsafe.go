//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/astrid-os/astrid-node/abi"
)

// The record layout readyPtr relies on; a change to abi.Ready breaks the
// build here instead of corrupting records at run time.
var _ [abi.ReadyRecordSize - unsafe.Sizeof(abi.Ready{})]struct{}
var _ [unsafe.Sizeof(abi.Ready{}) - abi.ReadyRecordSize]struct{}

func readyPtr(b []abi.Ready) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func ptrU32(p *uint32) unsafe.Pointer { return unsafe.Pointer(p) }
