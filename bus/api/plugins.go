package api

// The plugins admin API (group AdminGroup): WASM modules kept in the
// JetStream Object Store (bucket PluginsBucket), changed while segd runs.
// See docs/api.md.
const (
	SubjectPluginPut    = AdminGroup + ".plugin.put"
	SubjectPluginGet    = AdminGroup + ".plugin.get"
	SubjectPluginList   = AdminGroup + ".plugin.list"
	SubjectPluginDelete = AdminGroup + ".plugin.delete"
)

// PluginsBucket is the Object Store bucket of plugin modules: the object
// NAME holds plugin NAME's module; objects under PluginUploadPrefix are
// modules a client uploaded for a plugin.put that names them.
const PluginsBucket = "SEGD_PLUGINS"

// PluginUploadPrefix starts the names of uploaded objects, e.g.
// "upload/amount/<sha256>": segd reads one in a plugin.put, then deletes it.
const PluginUploadPrefix = "upload/"

// PluginVersionPrefix starts the names of kept versions: object
// "versions/NAME/<sha256>" is a module plugin NAME ran, with its manifest,
// author and time; the last PluginVersionsKept of each plugin are kept.
const PluginVersionPrefix = "versions/"

// PluginVersionsKept is how many versions of a plugin PluginsBucket keeps
// (the current one included); a put past it deletes the oldest.
const PluginVersionsKept = 8

// PluginPutRequest installs a new version of plugin Name. The module comes
// inline (Module, base64 in JSON) when the request fits the server's max
// payload, or else as an object the client put into PluginsBucket
// (Object, under PluginUploadPrefix) with its hex sha256 (Digest). Manifest
// is the plugin's manifest (YAML or JSON, as NAME.yaml in --plugins DIR).
type PluginPutRequest struct {
	Name     string `json:"name"`
	Module   []byte `json:"module,omitempty"`
	Object   string `json:"object,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	Author   string `json:"author,omitempty"`
}

// PluginPutReply is the version accepted (the module's hex sha256) and the
// segments that name the plugin: each is rebuilt from the event log with
// the new version and swapped in (serving its previous membership,
// marked rebuilding, meanwhile).
type PluginPutReply struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Previous   string   `json:"previous_version,omitempty"`
	Size       int      `json:"size"`
	Rebuilding []string `json:"rebuilding"`
}

// PluginRequest names a plugin (plugin.get, plugin.delete).
type PluginRequest struct {
	Name   string `json:"name"`
	Author string `json:"author,omitempty"`
	// Version, for plugin.get, asks about one kept version: its hex
	// sha256, or a prefix of it (at least 8 digits) that only it has.
	Version string `json:"version,omitempty"`
}

// PluginVersion is a kept version of a plugin. Object is where its module
// is in PluginsBucket (a client reads it there: segd plugin get
// --version V -o FILE).
type PluginVersion struct {
	Version  string `json:"version"`
	Size     int    `json:"size"`
	Author   string `json:"author,omitempty"`
	Time     string `json:"time,omitempty"`
	Manifest string `json:"manifest,omitempty"`
	Object   string `json:"object"`
}

// Plugin is a plugin and where it stands. Source is "store" (PluginsBucket)
// or "dir" (--plugins DIR, File names it). Version is the running module's
// hex sha256; Stored is the one in the bucket (the two differ only while a
// stored module could not be loaded: State and LastError say why).
// Segments name the plugin in their rules.
type Plugin struct {
	Name      string   `json:"name"`
	Source    string   `json:"source"`
	File      string   `json:"file,omitempty"`
	Version   string   `json:"version,omitempty"`
	Stored    string   `json:"stored_version,omitempty"`
	Size      int      `json:"size,omitempty"`
	ABI       string   `json:"abi,omitempty"`
	Manifest  string   `json:"manifest,omitempty"`
	Author    string   `json:"author,omitempty"`
	Time      string   `json:"time,omitempty"`
	State     string   `json:"state"`
	LastError string   `json:"last_error,omitempty"`
	Segments  []string `json:"segments"`
	// Versions are the kept versions, newest first (plugin.get; with a
	// version asked for, that one only).
	Versions []PluginVersion `json:"versions,omitempty"`
}

// PluginListReply lists every plugin, by name.
type PluginListReply struct {
	Plugins []Plugin `json:"plugins"`
}

// PluginDeleteReply names the plugin deleted from the bucket.
type PluginDeleteReply struct {
	Name string `json:"name"`
}
