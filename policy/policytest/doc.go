// Package policytest mints X.509 material for tests: root and intermediate
// CAs, client and server leaves (with Microsoft UPN subject alternative
// names, which crypto/x509 cannot write), and CRLs.
//
// It uses the standard library only and is meant for _test.go files and the
// genpki generator that writes the committed test PKI in testdata/pki:
//
//	root := policytest.NewCA(t, "Employee Root")
//	inter := root.MustIntermediate(t, "Employee Issuing CA")
//	alice := inter.MustIssue(t, policytest.LeafOptions{CN: "Alice", UPNs: []string{"alice@corp.example.com"}})
//	crl := inter.MustCRL(t, carol.Cert)
//
// Every function has an error-returning form and a Must form that takes a
// testing.TB and fails the test on error.
package policytest

//go:generate go run ./genpki -out ../../testdata/pki
