//go:build wasip1

// Command multi holds every test capsule of the runtime package in one
// module, so the tests compile one module instead of ten (compiling is
// slow under -race). The capsule's name, which the runtime passes as
// argv[0], picks the behaviour.
package main

import "os"

var behaviours = map[string]func(){
	"busy":    runBusy,
	"block":   runBlock,
	"sleep":   runSleep,
	"trap":    runTrap,
	"panic":   runPanic,
	"exit":    runExit,
	"alloc":   runAlloc,
	"nocap":   runNocap,
	"hostile": runHostile,
	"bench":   runBench,
}

func main() {
	run, ok := behaviours[os.Args[0]]
	if !ok {
		os.Exit(100)
	}
	run()
}
