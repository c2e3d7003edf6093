package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// PluginsBucket is the Object Store bucket of plugin modules (api.PluginsBucket).
const PluginsBucket = api.PluginsBucket

// PluginStorePermissions are the subjects segd's own identity publishes to
// in order to keep PluginsBucket: create and inspect its stream, write,
// read, list and delete objects (reads go through ordered consumers whose
// deliveries come to its inbox). Under authentication they belong to the
// service role's JetStream permissions.
var PluginStorePermissions = []string{
	"$JS.API.STREAM.CREATE.OBJ_" + PluginsBucket, "$JS.API.STREAM.UPDATE.OBJ_" + PluginsBucket, "$JS.API.STREAM.INFO.OBJ_" + PluginsBucket,
	"$JS.API.STREAM.MSG.GET.OBJ_" + PluginsBucket, "$JS.API.DIRECT.GET.OBJ_" + PluginsBucket + ".>",
	"$JS.API.STREAM.PURGE.OBJ_" + PluginsBucket,
	"$O." + PluginsBucket + ".>",
	"$JS.API.CONSUMER.CREATE.OBJ_" + PluginsBucket + ".>", "$JS.API.CONSUMER.DELETE.OBJ_" + PluginsBucket + ".*",
	"$JS.API.CONSUMER.INFO.OBJ_" + PluginsBucket + ".*", "$JS.FC.OBJ_" + PluginsBucket + ".>",
}

// PluginUploadPermissions are the subjects an admin publishes to in order
// to put a module too large for a request into PluginsBucket (the client
// writes the object, then names it in plugin.put).
var PluginUploadPermissions = []string{
	"$JS.API.STREAM.INFO.OBJ_" + PluginsBucket,
	"$JS.API.STREAM.MSG.GET.OBJ_" + PluginsBucket, "$JS.API.DIRECT.GET.OBJ_" + PluginsBucket + ".>",
	"$JS.API.STREAM.PURGE.OBJ_" + PluginsBucket,
	"$O." + PluginsBucket + ".>",
}

// PluginStore keeps plugin modules in PluginsBucket, so that they survive
// restarts and every segd sharing the NATS server sees the same ones: the
// object NAME is plugin NAME's module, its manifest, author and time in
// the object's metadata. Each put also keeps the module as a version
// (api.PluginVersionPrefix + NAME/<sha256>), the last
// api.PluginVersionsKept of each plugin.
type PluginStore struct {
	obj jetstream.ObjectStore
}

// PluginEntry is a stored module's description.
type PluginEntry struct {
	Name     string
	Digest   string // hex sha256 of the module
	Size     int
	Manifest string
	Author   string
	Time     time.Time
	// NUID is the object's, new at every put: it tells versions apart
	// before the module is read.
	NUID string
	// Stored is when the NATS server stored the object (Time is segd's
	// clock at the put, which a test's clock may hold still).
	Stored time.Time
}

// Object metadata keys.
const (
	metaManifest = "manifest"
	metaAuthor   = "author"
	metaTime     = "time"
	metaSHA256   = "sha256"
)

// OpenPluginStore creates PluginsBucket if needed (one replica).
func OpenPluginStore(ctx context.Context, js jetstream.JetStream) (*PluginStore, error) {
	return OpenPluginStoreReplicas(ctx, js, 1)
}

// OpenPluginStoreReplicas creates PluginsBucket if needed, or updates it,
// with this many copies in a cluster (0 means 1).
func OpenPluginStoreReplicas(ctx context.Context, js jetstream.JetStream, replicas int) (*PluginStore, error) {
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Replicas:    max(replicas, 1),
		Bucket:      PluginsBucket,
		Description: "segd: plugin modules of the plugins admin API (one object per plugin name)",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("plugins bucket %s: %w", PluginsBucket, err)
	}
	return &PluginStore{obj: obj}, nil
}

// Digest is the hex sha256 of a module, its version.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

func pluginEntryOf(info *jetstream.ObjectInfo) PluginEntry {
	e := PluginEntry{Name: info.Name, Size: int(info.Size), Time: info.ModTime, NUID: info.NUID, Stored: info.ModTime}
	if m := info.Metadata; m != nil {
		e.Digest, e.Manifest, e.Author = m[metaSHA256], m[metaManifest], m[metaAuthor]
		if t, err := time.Parse(time.RFC3339Nano, m[metaTime]); err == nil {
			e.Time = t
		}
	}
	return e
}

func notStored(name string, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("plugin %q has no module in %s: %w", name, PluginsBucket, ErrNotFound)
	}
	return err
}

// Get returns a plugin's stored module and its description; ErrNotFound
// when there is none. A module whose bytes do not match its recorded
// digest is an error.
func (s *PluginStore) Get(ctx context.Context, name string) (PluginEntry, []byte, error) {
	info, err := s.obj.GetInfo(ctx, name)
	if err != nil {
		return PluginEntry{}, nil, notStored(name, err)
	}
	wasm, err := s.obj.GetBytes(ctx, name)
	if err != nil {
		return PluginEntry{}, nil, notStored(name, err)
	}
	e := pluginEntryOf(info)
	if got := Digest(wasm); e.Digest != "" && got != e.Digest {
		return PluginEntry{}, nil, fmt.Errorf("plugin %q in %s: the module's sha256 is %s, its metadata says %s", name, PluginsBucket, got, e.Digest)
	} else if e.Digest == "" {
		e.Digest = got // put by hand (nats object put)
	}
	return e, wasm, nil
}

// Info describes a plugin's stored module without reading it.
func (s *PluginStore) Info(ctx context.Context, name string) (PluginEntry, error) {
	info, err := s.obj.GetInfo(ctx, name)
	if err != nil {
		return PluginEntry{}, notStored(name, err)
	}
	return pluginEntryOf(info), nil
}

// All describes every stored module, by name; uploads waiting for a
// plugin.put are left out.
func (s *PluginStore) All(ctx context.Context) ([]PluginEntry, error) {
	infos, err := s.obj.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []PluginEntry
	for _, info := range infos {
		if info.Deleted || !isPluginObject(info.Name) {
			continue
		}
		out = append(out, pluginEntryOf(info))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Put stores a module as plugin name's, replacing the one stored.
func (s *PluginStore) Put(ctx context.Context, name string, wasm []byte, manifest, author string, at time.Time) (PluginEntry, error) {
	e := PluginEntry{Name: name, Digest: Digest(wasm), Size: len(wasm), Manifest: manifest, Author: author, Time: at.UTC()}
	meta := jetstream.ObjectMeta{Name: name, Metadata: map[string]string{
		metaSHA256: e.Digest, metaTime: e.Time.Format(time.RFC3339Nano),
	}}
	if manifest != "" {
		meta.Metadata[metaManifest] = manifest
	}
	if author != "" {
		meta.Metadata[metaAuthor] = author
	}
	// The version first: a put that fails halfway leaves the running
	// module's object as it was.
	vmeta := meta
	vmeta.Name = versionObject(name, e.Digest)
	if _, err := s.obj.Put(ctx, vmeta, bytes.NewReader(wasm)); err != nil {
		return PluginEntry{}, fmt.Errorf("plugins bucket %s: keeping version %.12s of %q: %w", PluginsBucket, e.Digest, name, err)
	}
	info, err := s.obj.Put(ctx, meta, bytes.NewReader(wasm))
	if err != nil {
		return PluginEntry{}, fmt.Errorf("plugins bucket %s: storing %q: %w", PluginsBucket, name, err)
	}
	e.NUID = info.NUID
	if err := s.pruneVersions(ctx, name); err != nil {
		return e, fmt.Errorf("plugins bucket %s: %q is stored, but its oldest versions are not deleted: %w", PluginsBucket, name, err)
	}
	return e, nil
}

// isPluginObject reports whether an object of the bucket is a plugin's
// module (not an upload, not a kept version).
func isPluginObject(name string) bool {
	return !strings.HasPrefix(name, api.PluginUploadPrefix) && !strings.HasPrefix(name, api.PluginVersionPrefix)
}

func versionObject(name, digest string) string {
	return api.PluginVersionPrefix + name + "/" + digest
}

// Versions describes the kept versions of plugin name, newest first (the
// current one, if it was stored before versions were kept, included).
func (s *PluginStore) Versions(ctx context.Context, name string) ([]PluginEntry, error) {
	infos, err := s.obj.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	prefix := api.PluginVersionPrefix + name + "/"
	var out []PluginEntry
	var cur *PluginEntry
	for _, info := range infos {
		switch {
		case info.Deleted:
		case info.Name == name:
			e := pluginEntryOf(info)
			cur = &e
		case strings.HasPrefix(info.Name, prefix):
			e := pluginEntryOf(info)
			e.Name = info.Name
			if e.Digest == "" {
				e.Digest = strings.TrimPrefix(info.Name, prefix)
			}
			out = append(out, e)
		}
	}
	if cur != nil && cur.Digest != "" && !slices.ContainsFunc(out, func(e PluginEntry) bool { return e.Digest == cur.Digest }) {
		out = append(out, *cur) // stored before versions were kept
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Stored.After(out[j].Stored) })
	return out, nil
}

// pruneVersions deletes the versions of plugin name past the newest
// api.PluginVersionsKept.
func (s *PluginStore) pruneVersions(ctx context.Context, name string) error {
	vs, err := s.Versions(ctx, name)
	if err != nil {
		return err
	}
	var errs []error
	for i, v := range vs {
		if i >= api.PluginVersionsKept && v.Name != name {
			if err := s.obj.Delete(ctx, v.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ReadObject reads an object of the bucket whole, checking it against
// digest.
func (s *PluginStore) ReadObject(ctx context.Context, object, digest string) ([]byte, error) {
	wasm, err := s.obj.GetBytes(ctx, object)
	if err != nil {
		return nil, err
	}
	if got := Digest(wasm); got != digest {
		return nil, fmt.Errorf("object %q in %s has sha256 %s, not %s", object, PluginsBucket, got, digest)
	}
	return wasm, nil
}

// Delete removes a plugin's stored module; ErrNotFound when there is none.
func (s *PluginStore) Delete(ctx context.Context, name string) error {
	if _, err := s.obj.GetInfo(ctx, name); err != nil {
		return notStored(name, err)
	}
	return notStored(name, s.obj.Delete(ctx, name))
}

// ReadUpload reads an uploaded module (object, under
// api.PluginUploadPrefix), refusing one over maxBytes before reading it or
// whose sha256 is not digest; the upload is deleted once read, whatever
// the outcome (a client retries with a new upload).
func (s *PluginStore) ReadUpload(ctx context.Context, object, digest string, maxBytes int64) ([]byte, error) {
	info, err := s.obj.GetInfo(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, &Error{Code: api.CodeBadRequest, Field: "object",
			Err: fmt.Errorf("object %q is not in bucket %s: put the module there first", object, PluginsBucket)}
	}
	if err != nil {
		return nil, err
	}
	defer s.obj.Delete(context.WithoutCancel(ctx), object) //nolint:errcheck
	if int64(info.Size) > maxBytes {
		return nil, &Error{Code: api.CodeBadRequest, Field: "object",
			Err: fmt.Errorf("object %q is %d bytes, over the module limit of %d", object, info.Size, maxBytes)}
	}
	wasm, err := s.obj.GetBytes(ctx, object)
	if err != nil {
		return nil, err
	}
	if got := Digest(wasm); got != digest {
		return nil, &Error{Code: api.CodeBadRequest, Field: "digest",
			Err: fmt.Errorf("object %q has sha256 %s, not the digest %s the request gives", object, got, digest)}
	}
	return wasm, nil
}

// WatchPlugins calls fn, in order, for every change of a stored module
// from now on, after the current description of each (so that nothing
// written between a read and the watch is missed), until ctx ends: puts
// and deletes written by anyone (another segd, or `nats object put`).
// Uploads are left out.
func (s *PluginStore) WatchPlugins(ctx context.Context, fn func(e PluginEntry, deleted bool)) error {
	w, err := s.obj.Watch(ctx)
	if err != nil {
		return fmt.Errorf("watching %s: %w", PluginsBucket, err)
	}
	forwardUpdates(ctx, w.Updates(), w.Stop, func(info *jetstream.ObjectInfo) {
		if info == nil || !isPluginObject(info.Name) {
			return // nil marks the end of the current values
		}
		fn(pluginEntryOf(info), info.Deleted)
	})
	return nil
}
