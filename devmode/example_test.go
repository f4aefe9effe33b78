package devmode_test

import (
	"fmt"

	"github.com/outrigger/outrigger/devmode"
)

func ExampleParseRunFile() {
	rf, err := devmode.ParseRunFile([]byte(`
version: 1
apps:
  - appID: callee
    appDirPath: ./callee
    appPort: 6011
    command: ["go", "run", "."]
  - appDirPath: ./caller
    command: ["go", "run", "."]
    comand: ["typo"]
`))
	fmt.Println(rf, err)
	// Output:
	// <nil> run file: line 10: apps[1]: unknown field "comand"; did you mean "command"?
}
