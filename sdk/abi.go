package sdk

// ABI constants of version 1 (see ABI.md).
const (
	// ABIMajor is the ABI major version this SDK implements.
	ABIMajor = 1
	// ABIMinor is the ABI minor version this SDK implements.
	ABIMinor = 1
	// ABIVersion is ABIMajor<<16 | ABIMinor, the value of the segd_abi_version export.
	ABIVersion = ABIMajor<<16 | ABIMinor

	// Magic opens every batch: the bytes "SGB1".
	Magic = 0x31424753
	// HeaderSize is the size of the batch header in bytes.
	HeaderSize = 64

	// KindEvents marks a batch of events (and, as a bit of segd_kinds, a
	// plugin that judges events).
	KindEvents = 1
	// KindProfiles marks a batch of user profiles.
	KindProfiles = 2
)

// Type is the type tag of one property value in a batch.
type Type uint8

// Property type tags, one byte per (key, item) in the types column.
const (
	// Absent: the item has no such property.
	Absent Type = 0
	// Null: the property is JSON null.
	Null Type = 1
	// False is the boolean false.
	False Type = 2
	// True is the boolean true.
	True Type = 3
	// Number is a float64, stored in the values column.
	Number Type = 4
	// String is a UTF-8 string, a (offset, length) reference in the values column.
	String Type = 5
	// JSON is a nested array or object as JSON text, referenced like a String.
	JSON Type = 6
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case Absent:
		return "absent"
	case Null:
		return "null"
	case False, True:
		return "bool"
	case Number:
		return "number"
	case String:
		return "string"
	case JSON:
		return "json"
	}
	return "unknown"
}
