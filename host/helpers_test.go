package host

import (
	"errors"
	"strings"

	"github.com/segd/segd/bus/client"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func asClientError(err error, target **client.Error) bool { return errors.As(err, target) }
