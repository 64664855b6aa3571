// Package policy is gatehouse's domain core: it decides whether a client
// certificate may have network access, and what access.
//
// A decision runs four steps, in order, and stops at the first that fails:
//
//  1. trust: the presented chain verifies to a configured client CA, the leaf
//     carries the clientAuth EKU, every certificate is inside its validity
//     period, has a strong key (RSA ≥ min_rsa_bits, ECDSA P-256/P-384/P-521,
//     Ed25519) and a strong signature (no SHA-1, MD5), and revocation status is known and good (CRL files; with a
//     [RevocationChecker], such as package policy/revocation provides, also
//     CRLs fetched from URLs and OCSP);
//  2. identity: the leaf's names (SAN UPN, SAN e-mail, CN, SAN DNS, subject
//     serialNumber, SHA-256 fingerprint) are extracted, the certificate is
//     classified as a user or a device, and its lookup key is chosen;
//  3. directory: the key finds exactly one directory entry and its groups,
//     nested groups included;
//  4. rules: the first [[policy]] rule whose conditions match yields the
//     access; no match means deny.
//
// The result is always a [Decision] value carrying the rule that made it and
// a reason; an error is never used to say "denied". Configuration compiles
// with [Compile] into an immutable [*Policy]; an [Authorizer] holds the
// current one behind an atomic pointer so a reload swaps it whole.
//
// The package imports only the standard library and its own leaf package
// policy/dn, the RFC 4514 DN parser it shares with the directory. A denial
// names its real cause: each has its own Code (see [Code]).
package policy
