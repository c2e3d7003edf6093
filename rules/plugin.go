package rules

// PluginRef names a WASM plugin predicate and the parameters a rule hands it.
// In YAML it reads `where: {plugin: geofence, params: {...}}`.
type PluginRef struct {
	// Name is the plugin's name: its file name without ".wasm".
	Name string `yaml:"plugin" json:"plugin"`
	// Params is handed to the plugin's init, once per instance, as JSON.
	Params map[string]any `yaml:"params" json:"params,omitempty"`
}

// Plugins resolves plugin references into predicates. Package plugins
// implements it; rules compile without it when they reference no plugin.
type Plugins interface {
	// EventPredicate returns a predicate over events backed by the plugin.
	EventPredicate(ref PluginRef) (EventPredicate, error)
	// ProfilePredicate returns a predicate over profiles backed by the plugin.
	ProfilePredicate(ref PluginRef) (ProfilePredicate, error)
}
