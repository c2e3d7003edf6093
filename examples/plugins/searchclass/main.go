// Command searchclass is a segd plugin: it classifies a text property (a
// search term, a user agent, a page title...) against many keyword patterns
// at once with an Aho-Corasick automaton, case-insensitively (ASCII), and
// matches when the text falls into one of the wanted classes.
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o searchclass.wasm .
//
// Params:
//
//	{"prop": "term",
//	 "classes": {"electronics": ["laptop", "iphone", "usb-c"], "garden": ["hose", "seeds"]},
//	 "match": ["electronics"]}
//
// An event matches if its prop contains a keyword of any class in "match".
package main

import (
	"fmt"

	"github.com/segd/segd/sdk"
)

// node is an automaton state; next is indexed by lower-cased byte.
type node struct {
	next [256]int32
	fail int32
	out  bool // a wanted keyword ends here (directly or through fail links)
}

var (
	prop  sdk.Key // the text property, resolved once per batch
	nodes []node
)

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func init() {
	sdk.OnInit(setup)
	sdk.SendOnlyKeys() // the host sends only the properties named in the params
	sdk.HandleEvents(func(e sdk.Event) bool { return scan(e.StrOf(prop)) })
	sdk.HandleProfiles(func(p sdk.Profile) bool { return scan(p.StrOf(prop)) })
}

func scan(s string) bool {
	st := int32(0)
	for i := 0; i < len(s); i++ {
		st = nodes[st].next[lower(s[i])]
		if nodes[st].out {
			return true
		}
	}
	return false
}

func setup() error {
	var p struct {
		Prop    string              `json:"prop"`
		Classes map[string][]string `json:"classes"`
		Match   []string            `json:"match"`
	}
	if err := sdk.Params(&p); err != nil {
		return err
	}
	name := "term"
	if p.Prop != "" {
		name = p.Prop
	}
	prop = sdk.Prop(name)
	if len(p.Match) == 0 {
		return fmt.Errorf("params: match: name at least one class")
	}
	nodes = make([]node, 1, 256)
	for i := range nodes[0].next {
		nodes[0].next[i] = -1
	}
	count := 0
	for _, class := range p.Match {
		kws, ok := p.Classes[class]
		if !ok {
			return fmt.Errorf("params: match: unknown class %q", class)
		}
		for _, kw := range kws {
			if kw == "" {
				return fmt.Errorf("params: classes.%s: empty keyword", class)
			}
			st := int32(0)
			for i := 0; i < len(kw); i++ {
				c := lower(kw[i])
				if nodes[st].next[c] < 0 {
					nodes = append(nodes, node{})
					n := &nodes[len(nodes)-1]
					for j := range n.next {
						n.next[j] = -1
					}
					nodes[st].next[c] = int32(len(nodes) - 1)
				}
				st = nodes[st].next[c]
			}
			nodes[st].out = true
			count++
		}
	}
	// Breadth-first: fail links, then complete the transition table.
	queue := []int32{}
	for c := range 256 {
		if s := nodes[0].next[c]; s < 0 {
			nodes[0].next[c] = 0
		} else {
			nodes[s].fail = 0
			queue = append(queue, s)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		nodes[u].out = nodes[u].out || nodes[nodes[u].fail].out
		for c := range 256 {
			s := nodes[u].next[c]
			if s < 0 {
				nodes[u].next[c] = nodes[nodes[u].fail].next[c]
				continue
			}
			nodes[s].fail = nodes[nodes[u].fail].next[c]
			queue = append(queue, s)
		}
	}
	sdk.Logf("searchclass: %d keywords, %d states", count, len(nodes))
	return nil
}

func main() {}
