// Command probe reports what the sandbox lets it see, as its error message.
package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"os"
	"time"

	"github.com/segd/segd/sdk"
)

var report []byte

func init() {
	sdk.OnInit(func() error {
		r := map[string]any{}
		_, err := os.ReadFile("/etc/hostname")
		r["read_file_err"] = errString(err)
		_, err = os.ReadDir("/")
		r["read_dir_err"] = errString(err)
		err = os.WriteFile("/tmp/segd-probe", []byte("x"), 0o644)
		r["write_file_err"] = errString(err)
		r["env"] = os.Environ()
		r["args"] = os.Args
		r["now_unix"] = time.Now().Unix()
		_, err = net.Dial("tcp", "127.0.0.1:80")
		r["dial_err"] = errString(err)
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		r["rand"] = b
		report, _ = json.Marshal(r)
		return nil
	})
	sdk.HandleEvents(func(e sdk.Event) bool { panic(errors.New(string(report))) })
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func main() {}
