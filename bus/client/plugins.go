package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/segd/segd/bus/api"
)

// requestMargin is what a plugin.put request holds beside the module and
// the manifest (field names, the name, the author, headers), with room
// to spare.
const requestMargin = 4 << 10

// PushPlugin installs wasm (with an optional manifest, YAML or JSON) as
// the new version of plugin name. A module whose request would not fit
// the connection's max payload is first put into the Object Store bucket
// api.PluginsBucket, and the request names it with its digest. segd
// validates, compiles and warms it before accepting it: a bad one is
// refused (400, with the reason) and the running version stays.
func (c *Client) PushPlugin(ctx context.Context, name string, wasm []byte, manifest, author string) (*api.PluginPutReply, error) {
	sum := sha256.Sum256(wasm)
	r := api.PluginPutRequest{Name: name, Manifest: manifest, Author: author, Digest: hex.EncodeToString(sum[:])}
	if int64(base64.StdEncoding.EncodedLen(len(wasm))+len(manifest)+requestMargin) <= c.nc.MaxPayload() {
		r.Module = wasm
	} else {
		obj, err := c.uploadPlugin(ctx, name, r.Digest, wasm)
		if err != nil {
			return nil, err
		}
		r.Object = obj
	}
	var out api.PluginPutReply
	return &out, c.call(ctx, api.SubjectPluginPut, r, &out)
}

// uploadPlugin puts a module into api.PluginsBucket for a plugin.put to
// name; segd deletes the object once it has read it.
func (c *Client) uploadPlugin(ctx context.Context, name, digest string, wasm []byte) (string, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return "", err
	}
	obj, err := js.ObjectStore(ctx, api.PluginsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return "", fmt.Errorf("bucket %s does not exist: is segd (with the plugins admin API) running on this NATS server? %w", api.PluginsBucket, err)
	}
	if err != nil {
		return "", fmt.Errorf("bucket %s: %w", api.PluginsBucket, err)
	}
	object := api.PluginUploadPrefix + name + "/" + digest
	if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: object}, bytes.NewReader(wasm)); err != nil {
		return "", fmt.Errorf("uploading the module to bucket %s: %w", api.PluginsBucket, err)
	}
	return object, nil
}

// GetPlugin describes a plugin: versions, manifest, state, the segments
// that name it.
func (c *Client) GetPlugin(ctx context.Context, name string) (*api.Plugin, error) {
	var out api.Plugin
	return &out, c.call(ctx, api.SubjectPluginGet, api.PluginRequest{Name: name}, &out)
}

// GetPluginVersion describes a plugin with one kept version: version is
// its sha256 or a prefix of it (at least 8 hex digits) only it has.
func (c *Client) GetPluginVersion(ctx context.Context, name, version string) (*api.Plugin, error) {
	var out api.Plugin
	return &out, c.call(ctx, api.SubjectPluginGet, api.PluginRequest{Name: name, Version: version}, &out)
}

// ReadPluginVersion reads a kept version's module from api.PluginsBucket
// (v from GetPluginVersion), checking its sha256.
func (c *Client) ReadPluginVersion(ctx context.Context, v api.PluginVersion) ([]byte, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, err
	}
	obj, err := js.ObjectStore(ctx, api.PluginsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", api.PluginsBucket, err)
	}
	wasm, err := obj.GetBytes(ctx, v.Object)
	if err != nil {
		return nil, fmt.Errorf("reading %s from bucket %s: %w", v.Object, api.PluginsBucket, err)
	}
	if sum := sha256.Sum256(wasm); hex.EncodeToString(sum[:]) != v.Version {
		return nil, fmt.Errorf("%s in bucket %s: its sha256 is %x, not the version %s", v.Object, api.PluginsBucket, sum, v.Version)
	}
	return wasm, nil
}

// ListPlugins lists every plugin.
func (c *Client) ListPlugins(ctx context.Context) ([]api.Plugin, error) {
	var out api.PluginListReply
	return out.Plugins, c.call(ctx, api.SubjectPluginList, struct{}{}, &out)
}

// DeletePlugin deletes a plugin's module from the bucket; refused (409,
// IsConflict) while a segment names it.
func (c *Client) DeletePlugin(ctx context.Context, name, author string) (*api.PluginDeleteReply, error) {
	var out api.PluginDeleteReply
	return &out, c.call(ctx, api.SubjectPluginDelete, api.PluginRequest{Name: name, Author: author}, &out)
}
