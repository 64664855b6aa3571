package policy

// Door names a way into the network. Both doors ask the same question of a
// Decision — "may this identity use door X, and with which grant?" — through
// [Decision.At], so door permission is decided in one place.
type Door uint8

// Doors.
const (
	DoorWiFi Door = iota + 1 // 802.1X through RADIUS
	DoorVPN                  // WireGuard through the enrollment API
)

// String returns the door's name as used in logs, metrics and the audit
// trail: "wifi" or "vpn".
func (d Door) String() string {
	switch d {
	case DoorWiFi:
		return "wifi"
	case DoorVPN:
		return "vpn"
	}
	return "unknown"
}

// Permits reports whether an allowing decision grants access through door:
// its rule has a table for that door. It is false for every denial.
func (d *Decision) Permits(door Door) bool {
	if !d.Allowed {
		return false
	}
	switch door {
	case DoorWiFi:
		return d.WiFi.Permitted
	case DoorVPN:
		return d.VPN != nil
	}
	return false
}

// At returns the decision as it applies at door: unchanged when it denies
// or when the rule grants that door; otherwise a denial with
// CodeDoorNotPermitted naming the rule, and without the grants. Every door
// calls it before acting on a decision, at login and at re-validation.
func (d Decision) At(door Door) Decision {
	if !d.Allowed || d.Permits(door) {
		return d
	}
	d.Allowed, d.Code = false, CodeDoorNotPermitted
	d.Reason = "rule " + d.Rule + " gives no " + doorNoun(door) + " access"
	d.WiFi, d.VPN = WiFi{}, nil
	return d
}

func doorNoun(d Door) string {
	switch d {
	case DoorWiFi:
		return "Wi-Fi"
	case DoorVPN:
		return "VPN"
	}
	return d.String()
}
