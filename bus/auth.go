package bus

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/segd/segd/bus/api"
	"github.com/segd/segd/bus/cluster"
)

// The roles of docs/security.md.
const (
	RoleProducer = "producer"
	RoleReader   = "reader"
	RoleAdmin    = "admin"
	// RoleService is segd's own identity.
	RoleService = "segd"
)

// InboxPrefix is the reply inbox prefix of user: each user may subscribe
// only to its own inbox, InboxPrefix(user)+".>", so that nobody reads the
// replies to another's requests.
func InboxPrefix(user string) string { return "_INBOX." + user }

// JetStream API subjects a role may use, beside its own subjects.
var (
	// readerJS: the change feed (durable or ephemeral consumers on
	// SEGD_CHANGES) and large exports (Object Store SEGD_EXPORTS).
	readerJS = []string{
		"$JS.API.STREAM.INFO." + api.ChangesStream,
		"$JS.API.CONSUMER.CREATE." + api.ChangesStream + ".>",
		"$JS.API.CONSUMER.INFO." + api.ChangesStream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + api.ChangesStream + ".*",
		"$JS.ACK." + api.ChangesStream + ".>",
		"$JS.API.STREAM.INFO.OBJ_" + api.ExportBucket,
		"$JS.API.DIRECT.GET.OBJ_" + api.ExportBucket + ".>",
		"$JS.API.CONSUMER.CREATE.OBJ_" + api.ExportBucket + ".>",
		"$JS.API.CONSUMER.DELETE.OBJ_" + api.ExportBucket + ".*",
		// Flow control of the ordered consumer reading a large object.
		"$JS.FC.OBJ_" + api.ExportBucket + ".>",
	}
	// serviceJS: segd's streams, its durable consumer and ordered log
	// readers, the export bucket, the rules bucket, the plugins bucket,
	// the owners bucket and the snapshots bucket (several hosts).
	serviceJS = append(append([]string{
		"$JS.API.STREAM.CREATE." + EventsStream, "$JS.API.STREAM.UPDATE." + EventsStream, "$JS.API.STREAM.INFO." + EventsStream,
		// A partition's last message (bus.LastPartitionSeq).
		"$JS.API.STREAM.MSG.GET." + EventsStream,
		"$JS.API.STREAM.CREATE." + api.ChangesStream, "$JS.API.STREAM.UPDATE." + api.ChangesStream, "$JS.API.STREAM.INFO." + api.ChangesStream,
		"$JS.API.STREAM.MSG.GET." + api.ChangesStream,
		"$JS.API.STREAM.CREATE." + DeadLetterStream, "$JS.API.STREAM.UPDATE." + DeadLetterStream, "$JS.API.STREAM.INFO." + DeadLetterStream,
		"$JS.API.STREAM.CREATE.OBJ_" + api.ExportBucket, "$JS.API.STREAM.INFO.OBJ_" + api.ExportBucket,
		"$JS.API.DIRECT.GET.OBJ_" + api.ExportBucket + ".>",
		"$O." + api.ExportBucket + ".>",
		"$JS.API.CONSUMER.CREATE." + EventsStream + ".>",
		"$JS.API.CONSUMER.INFO." + EventsStream + ".*",
		"$JS.API.CONSUMER.DELETE." + EventsStream + ".*",
		// Its durables: "segd", or segd-p<N>of<P> per partition.
		"$JS.API.CONSUMER.RESET." + EventsStream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + EventsStream + ".*",
		"$JS.ACK." + EventsStream + ".>",
	}, RuleStorePermissions...), append(PluginStorePermissions, cluster.Permissions(EventsStream)...)...)
)

// RolePermissions returns the NATS permissions of role for user: the
// blocks docs/security.md gives operators (a test holds the two equal).
func RolePermissions(role, user string) (*server.Permissions, error) {
	inbox := []string{InboxPrefix(user) + ".>"}
	reads := append([]string{api.Group + ".>", "$SRV.>"}, readerJS...)
	switch role {
	case RoleProducer:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{api.EventsSubjectPrefix + ">", PartitionSubjects}},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}, nil
	case RoleReader:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: reads},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}, nil
	case RoleAdmin:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: append(append([]string{api.AdminGroup + ".>"}, reads...), PluginUploadPermissions...)},
			Subscribe: &server.SubjectPermission{Allow: inbox},
		}, nil
	case RoleService:
		return &server.Permissions{
			// Its inboxes: replies in chunks to another host's internal
			// request (several messages to one inbox).
			Publish: &server.SubjectPermission{Allow: append(append([]string{api.ChangesSubjectPrefix + ">", ControlSubjects, DeadLetterSubjectPrefix + ">"},
				serviceJS...), inbox...)},
			Subscribe: &server.SubjectPermission{Allow: append([]string{api.Group + ".>", api.AdminGroup + ".>", "$SRV.>", cluster.InternalPrefix + ">"}, inbox...)},
			// One reply per request; exports and previews may take minutes.
			Response: &server.ResponsePermission{MaxMsgs: 1, Expires: 10 * time.Minute},
		}, nil
	}
	return nil, fmt.Errorf("role %q: want %s, %s or %s", role, RoleProducer, RoleReader, RoleAdmin)
}

// User is a user of the embedded server (an entry of an auth file).
type User struct {
	// Name is the user name; its reply inbox is InboxPrefix(Name).
	Name string `yaml:"user"`
	// Password authenticates the user (plain, or a bcrypt hash starting
	// "$2a$" from `nats server passwd`); NKey is instead the public key
	// (U...) of an nkey whose seed the client holds. One of the two.
	Password string `yaml:"password,omitempty"`
	NKey     string `yaml:"nkey,omitempty"`
	// Role is producer, reader or admin.
	Role string `yaml:"role"`
}

// AuthFile is the format of `segd serve --auth FILE` (YAML).
type AuthFile struct {
	Users []User `yaml:"users"`
}

// ReadAuthFile reads and checks an auth file.
func ReadAuthFile(path string) ([]User, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	var f AuthFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	if err := CheckUsers(f.Users); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return f.Users, nil
}

// CheckUsers reports the first user that cannot be served: a missing or
// duplicate name, no credential or two, an unknown role.
func CheckUsers(users []User) error {
	if len(users) == 0 {
		return errors.New("no users: authentication would let nobody in")
	}
	seen := map[string]bool{}
	for i, u := range users {
		switch {
		case u.Name == "":
			return fmt.Errorf("user %d: \"user\" is missing (it names the user's reply inbox, also for an nkey)", i+1)
		case u.Name == RoleService:
			return fmt.Errorf("user %q: the name is segd's own in-process identity; pick another", u.Name)
		case strings.ContainsAny(u.Name, " \t.*>"):
			return fmt.Errorf("user %q: a name may not hold spaces, dots or wildcards (it names the user's inbox %s)", u.Name, InboxPrefix(u.Name))
		case seen[u.Name]:
			return fmt.Errorf("user %q appears twice", u.Name)
		case (u.Password == "") == (u.NKey == ""):
			return fmt.Errorf("user %q: give either a password or an nkey", u.Name)
		case u.NKey != "" && !nkeys.IsValidPublicUserKey(u.NKey):
			return fmt.Errorf("user %q: nkey %q is not a user public key (U...)", u.Name, u.NKey)
		}
		if u.Role == RoleService {
			return fmt.Errorf("user %q: role %q is segd's own", u.Name, u.Role)
		}
		if _, err := RolePermissions(u.Role, u.Name); err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
		seen[u.Name] = true
	}
	return nil
}

// applyAuth gives the server opts the users, and segd's own in-process
// user a fresh secret; it returns the options segd's connections need.
func applyAuth(sopts *server.Options, users []User) ([]nats.Option, error) {
	if err := CheckUsers(users); err != nil {
		return nil, err
	}
	for _, u := range users {
		perms, _ := RolePermissions(u.Role, u.Name)
		if u.NKey != "" {
			sopts.Nkeys = append(sopts.Nkeys, &server.NkeyUser{Nkey: u.NKey, Permissions: perms})
			continue
		}
		sopts.Users = append(sopts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	pw := base64.RawURLEncoding.EncodeToString(secret)
	self, _ := RolePermissions(RoleService, RoleService)
	// The demo stream (segd serve --demo) is published on segd's own
	// connection (partition-aware with several partitions), which first
	// looks for an earlier demo history (STREAM.MSG.GET, in serviceJS).
	self.Publish.Allow = append(slices.Clone(self.Publish.Allow), api.EventsSubjectPrefix+">", PartitionSubjects)
	sopts.Users = append(sopts.Users, &server.User{Username: RoleService, Password: pw, Permissions: self,
		// Only in-process: the secret never leaves this process anyway.
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}}})
	return []nats.Option{nats.UserInfo(RoleService, pw), nats.CustomInboxPrefix(InboxPrefix(RoleService))}, nil
}

// isLoopback reports whether host is an address only this machine reaches.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// insecureListenError says how to secure an embedded server on a network.
func insecureListenError(host string, port int) error {
	return fmt.Errorf("embedded NATS: listening on %s without authentication would let anyone who reaches it publish events, read every segment and delete the streams; "+
		"add users with --auth FILE (segd auth init FILE writes one, docs/security.md), or pass --insecure if only trusted machines reach this network",
		net.JoinHostPort(host, fmt.Sprint(port)))
}
