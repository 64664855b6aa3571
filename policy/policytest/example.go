package policytest

// ExamplePKI maps the files the production example config
// (config.example.toml at the repository root) names under /etc/gatehouse to the
// committed test PKI files in testdata/pki that stand in for them; "" is a
// secret (any long random string will do). A fresh map on each call.
func ExamplePKI() map[string]string {
	return map[string]string{
		"pki/example-corp-root-ca-2024.pem":           "employee-root.pem",
		"pki/example-corp-device-ca-2024.pem":         "device-ca.pem",
		"pki/example-corp-employee-issuing-ca-g2.pem": "employee-int.pem",
		"pki/example-corp-root-ca-2024.crl":           "employee-root.crl",
		"pki/example-corp-employee-issuing-ca-g2.crl": "employee-int.crl",
		"pki/example-corp-device-ca-2024.crl":         "device-ca.crl",
		"pki/radius.example.com.pem":                  "server.pem",
		"pki/radius.example.com.key":                  "server.key",
		"secrets/ldap-bind-password":                  "",
		"secrets/radius-access-points-hq":             "",
		"secrets/radius-wlc-branches":                 "",
	}
}
