package bus

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/segd/segd/bus/api"
)

// PluginsAdmin is what the plugins admin endpoints (group api.AdminGroup)
// ask of segd: host implements it over PluginStore, the plugin registry
// and the engine.
type PluginsAdmin interface {
	PutPlugin(ctx context.Context, r api.PluginPutRequest) (*api.PluginPutReply, error)
	GetPlugin(ctx context.Context, r api.PluginRequest) (*api.Plugin, error)
	ListPlugins(ctx context.Context) (*api.PluginListReply, error)
	DeletePlugin(ctx context.Context, r api.PluginRequest) (*api.PluginDeleteReply, error)
}

// Limits of the plugins admin requests. A module's size is bounded by the
// registry (plugins.DefaultMaxModuleBytes); one inline is bounded by the
// server's max payload too.
const (
	// MaxPluginManifestBytes bounds a manifest (plugin.put).
	MaxPluginManifestBytes = 16 << 10
	// MaxPluginObjectBytes bounds the name of an uploaded object.
	MaxPluginObjectBytes = 256
)

var pluginNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// pluginName checks a plugin name before it reaches the Object Store (an
// object name) or the registry.
func pluginName(name string) *api.ErrorDetail {
	if name == "" {
		return badField("name", `"name" is required; want e.g. {"name":"amount"}`)
	}
	if !pluginNameRE.MatchString(name) {
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		return badField("name", fmt.Sprintf(`"name" %q is not a plugin name: a letter, then up to 63 letters, digits, '_' or '-'`, name))
	}
	return nil
}

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func parsePluginPut(data []byte) (api.PluginPutRequest, *api.ErrorDetail) {
	var r api.PluginPutRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return r, bad
	}
	if bad := pluginName(r.Name); bad != nil {
		return r, bad
	}
	if bad := ruleAuthor(r.Author); bad != nil {
		return r, bad
	}
	if len(r.Manifest) > MaxPluginManifestBytes {
		return r, badField("manifest", fmt.Sprintf(`"manifest" is %d bytes, over the limit of %d`, len(r.Manifest), MaxPluginManifestBytes))
	}
	switch {
	case len(r.Module) > 0 && r.Object != "":
		return r, badField("module", `send "module" (inline, base64) or "object" (uploaded to bucket `+PluginsBucket+`), not both`)
	case len(r.Module) > 0:
		if r.Digest != "" && r.Digest != Digest(r.Module) {
			return r, badField("digest", fmt.Sprintf(`"digest" is %s but the module's sha256 is %s`, r.Digest, Digest(r.Module)))
		}
	case r.Object != "":
		if len(r.Object) > MaxPluginObjectBytes {
			return r, badField("object", fmt.Sprintf(`"object" is %d bytes, over the limit of %d`, len(r.Object), MaxPluginObjectBytes))
		}
		if !strings.HasPrefix(r.Object, api.PluginUploadPrefix) {
			return r, badField("object", fmt.Sprintf(`"object" %q is not an upload: its name starts %q`, r.Object, api.PluginUploadPrefix))
		}
		if !digestRE.MatchString(r.Digest) {
			return r, badField("digest", `"digest" is required with "object": the module's sha256, 64 lowercase hex digits`)
		}
	default:
		return r, badField("module", `"module" (the module, base64) or "object" (a module uploaded to bucket `+PluginsBucket+`) is required`)
	}
	return r, nil
}

func parsePluginRequest(data []byte) (api.PluginRequest, *api.ErrorDetail) {
	var r api.PluginRequest
	if bad := decodeRequest(data, &r, false); bad != nil {
		return r, bad
	}
	if bad := pluginName(r.Name); bad != nil {
		return r, bad
	}
	if v := r.Version; v != "" && (len(v) < 8 || len(v) > 64 || strings.Trim(v, "0123456789abcdef") != "") {
		return r, badField("version", `"version" is a module's sha256 or a prefix of it: 8 to 64 lowercase hex digits`)
	}
	return r, ruleAuthor(r.Author)
}

// PluginEndpoints are the plugins admin endpoints. Their work runs beside
// the queries' pool (Slow): a put compiles a module and waits for
// JetStream.
func PluginEndpoints(a PluginsAdmin) []Endpoint {
	ep := func(name, subject, desc, req, reply string, parse func([]byte) (Work, *api.ErrorDetail)) Endpoint {
		return Endpoint{Name: name, Subject: subject, Slow: true, Description: desc, Request: req, Reply: reply, ParseContext: parse}
	}
	return []Endpoint{
		ep("plugin_put", api.SubjectPluginPut,
			"Install a new version of a plugin: validated, compiled and warmed before it is accepted (a bad module is refused with the reason; the running version stays), stored in "+PluginsBucket+", and every segment naming it rebuilt from the event log and swapped in. The module comes inline (base64) or as an object uploaded to the bucket.",
			`{"name":"amount","module":"AGFzbQEAAAA...","manifest":"props: [amount]\n","author":"ana"}`,
			`{"name":"amount","version":"5f1c...e2","previous_version":"9a03...7c","size":1234,"rebuilding":["big_plugin"]}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				r, bad := parsePluginPut(data)
				if bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.PutPlugin(ctx, r) }, nil
			}),
		ep("plugin_get", api.SubjectPluginGet,
			"A plugin's running version (sha256), the stored one, its manifest, state, and the segments that name it.",
			`{"name":"amount"}`,
			`{"name":"amount","source":"store","version":"5f1c...e2","stored_version":"5f1c...e2","size":1234,"abi":"1.0","manifest":"props: [amount]\n","author":"ana","time":"2026-12-07T10:00:00Z","state":"ok","segments":["big_plugin"]}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				r, bad := parsePluginRequest(data)
				if bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.GetPlugin(ctx, r) }, nil
			}),
		ep("plugin_list", api.SubjectPluginList,
			"Every plugin, from "+PluginsBucket+" and from --plugins DIR, with its version, state and the segments that name it.",
			`{}`, `{"plugins":[{"name":"amount","source":"store","version":"5f1c...e2","stored_version":"5f1c...e2","size":1234,"abi":"1.0","state":"ok","segments":["big_plugin"]}]}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				var r struct{}
				if bad := decodeRequest(data, &r, true); bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.ListPlugins(ctx) }, nil
			}),
		ep("plugin_delete", api.SubjectPluginDelete,
			"Delete a plugin's module from "+PluginsBucket+". Refused (409) while a segment names it, naming those.",
			`{"name":"amount"}`, `{"name":"amount"}`,
			func(data []byte) (Work, *api.ErrorDetail) {
				r, bad := parsePluginRequest(data)
				if bad != nil {
					return nil, bad
				}
				return func(ctx context.Context) (any, error) { return a.DeletePlugin(ctx, r) }, nil
			}),
	}
}
