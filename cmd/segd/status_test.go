package main

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segd/segd/bus/api"
)

// fill sets every field below v to a value of its own: strings to
// "<path>", numbers to distinct small values, bools to true, slices to one
// filled element. It returns the leaf paths with the text each should
// print as.
func fill(v reflect.Value, path string, next *int, want map[string]string) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), path, next, want)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), path+"."+v.Type().Field(i).Name, next, want)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), path+"[0]", next, want)
	case reflect.String:
		v.SetString("<" + path + ">")
		want[path] = "<" + path + ">"
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Uint64:
		*next++
		n := 100 + *next
		if v.CanInt() {
			v.SetInt(int64(n))
		} else {
			v.SetUint(uint64(n))
		}
		want[path] = fmt.Sprint(n)
	}
}

// TestStatusShowsEverything: segd status prints every field of the status
// reply in some readable form.
func TestStatusShowsEverything(t *testing.T) {
	t.Parallel()
	var st api.StatusReply
	want := map[string]string{}
	n := 0
	fill(reflect.ValueOf(&st).Elem(), "", &n, want)
	// Fields printed in another form than their JSON value.
	want[".Snapshot.IntervalMs"] = (time.Duration(st.Snapshot.IntervalMs) * time.Millisecond).String()
	want[".Plugins[0].Version"] = shortVersion(st.Plugins[0].Version)
	// Shown as their sum with RefusedValues, and RefusedValues alone.
	want[".RefusedItems"] = fmt.Sprint(st.RefusedItems + st.RefusedValues)
	var b bytes.Buffer
	printStatus(&b, &st)
	out := b.String()
	for path, text := range want {
		if !strings.Contains(out, text) {
			t.Errorf("status output lacks %s (%q)", path, text)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
