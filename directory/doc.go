// Package directory finds the directory entry of a certificate's holder and
// the groups it belongs to, from an LDAP server or an LDIF file. A
// [*Directory] satisfies policy.Directory structurally; the package imports
// none of gatehouse's packages.
//
// Both backends use the same filter templates (see [Config]): placeholders
// such as {upn} are replaced by values escaped with ldap.EscapeFilter, and an
// item naming an absent field matches nothing. The file backend compiles the
// filter with ldap.CompileFilter and evaluates it in memory, so a template
// behaves the same against a file as against a server.
//
// The LDAP backend keeps a small pool of long-lived connections bound as a
// service account (never as a user), bounds every lookup by a timeout,
// fails over across URLs and returns to the primary, and resolves nested
// groups with a depth limit and a cycle guard, batching several groups per
// query. Answers are cached (positive and negative TTL, bounded size) and
// concurrent identical lookups share one query. During an outage a lookup
// fails with an error whose Unavailable method returns true — or, when the
// admin allows it, is answered from a cached entry up to a stated age.
//
// A [directory] table decodes straight into [Config], for example:
//
//	[directory]
//	backend     = "ldap"
//	base_dn     = "dc=example,dc=com"
//	group_mode  = "memberof"
//	cache_ttl   = "5m"
//	on_outage   = "serve_stale"
//	stale_max_age = "1h"
//	timeout     = "3s"
//
//	[directory.ldap]
//	urls       = ["ldap://ldap1.example.com", "ldap://ldap2.example.com"]
//	start_tls  = true
//	ca_file    = "/etc/gatehouse/ldap-ca.pem"
//	bind_dn    = "cn=gatehouse,ou=services,dc=example,dc=com"
//	bind_password_file = "/etc/gatehouse/ldap-password"
//
// or, for a file: backend = "file", file = "/etc/gatehouse/directory.ldif".
package directory
