package main

import (
	"bytes"
	"fmt"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius"
)

// radsecPaths resolves the RadSec file keys against the config directory.
func radsecPaths(dir string, rc *radius.Config) {
	rel(dir, &rc.RadSecCert)
	rel(dir, &rc.RadSecKey)
	for i := range rc.RadSecClients {
		rel(dir, &rc.RadSecClients[i].CAFile)
	}
}

// radsecAnchorsApart refuses a radius.radsec_client ca_file holding a CA
// of trust.client_ca or trust.intermediates: access points are identified
// by a trust anchor of their own, so an employee's certificate can never
// open a RadSec connection.
func radsecAnchorsApart(file string, rc *radius.Config, t *policy.TrustConfig) []string {
	if len(rc.RadSecClients) == 0 {
		return nil
	}
	var employee [][]byte
	for _, f := range append(append([]string(nil), t.ClientCA...), t.Intermediates...) {
		certs, err := policy.ReadCertificates(f)
		if err != nil {
			continue // reported by policy.Compile
		}
		for _, c := range certs {
			employee = append(employee, c.Raw)
		}
	}
	var errs []string
	for i, c := range rc.RadSecClients {
		if c.CAFile == "" {
			continue // reported by radius
		}
		certs, err := policy.ReadCertificates(c.CAFile)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: radius.radsec_client[%d] %q: ca_file: %v", file, i, c.Name, err))
			continue
		}
		for _, ca := range certs {
			for _, e := range employee {
				if bytes.Equal(ca.Raw, e) {
					errs = append(errs, fmt.Sprintf("%s: radius.radsec_client[%d] %q: ca_file %s holds %q, an employee CA (trust.client_ca/intermediates): access points need a CA of their own",
						file, i, c.Name, c.CAFile, ca.Subject.String()))
				}
			}
		}
	}
	return errs
}
