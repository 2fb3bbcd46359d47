// Package grafana holds the Grafana dashboard for clustertrust, config/grafana/clustertrust.json.
package grafana

import _ "embed" // for Dashboard

// Dashboard is the Grafana dashboard for clustertrust (uid "clustertrust", schemaVersion 39): reviews
// by result and issuer, review latency, key fetches and their age, unknown-kid refetches, issuers by
// condition, the result cache and process memory. Its queries use a $datasource variable and no job
// or namespace: a Prometheus that scrapes the webhook is all it needs. The tests check that every
// metric and label it queries is one the webhook exports.
//
//go:embed clustertrust.json
var Dashboard []byte
