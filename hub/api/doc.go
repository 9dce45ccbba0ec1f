// Package api is the hub's REST API on net/http.ServeMux: the handlers,
// their application/problem+json errors (RFC 9457), and the hand-written
// OpenAPI document (openapi.yaml, embedded and served). Only the hub's
// composition root (hub/hubd) may import it; it wires the small
// interfaces this package defines (Devices, Tokens, Enrolment, Health,
// Metrics, Commands, Configs, Rollouts, Jobs, Integrations, PairingWindow, Accounts) to the hub's
// parts. Each handler keeps only the part of an interface it uses.
//
// The routes it owns, by what they need (a secret travels only over
// HTTPS or from this machine: otherwise 403):
//
//	nothing
//	  GET    /healthz
//	  GET    /api/v1/openapi.yaml
//	  GET    /api/v1/bootstrap                       hub ID, broker URLs, CA fingerprint, time
//	  GET    /metrics                                Prometheus exposition (if configured): open
//	                                                 from this machine, else the admin token
//	an agent's proof (hub/enrol does the work)
//	  POST   /api/v1/enroll                          join token: credentials
//	  POST   /api/v1/pair                            pending, then credentials once approved
//	  POST   /api/v1/device/certificate              HTTP Basic, the device's broker password
//	the admin bearer token
//	  GET    /api/v1/pairing                         the pairing window
//	  POST   /api/v1/pairing
//	  DELETE /api/v1/pairing
//	  GET    /api/v1/devices
//	  GET    /api/v1/devices/{id}
//	  PATCH  /api/v1/devices/{id}                    name, labels (JSON merge patch)
//	  DELETE /api/v1/devices/{id}
//	  POST   /api/v1/devices/{id}/revoke
//	  POST   /api/v1/devices/{id}/approve            with the pairing code
//	  POST   /api/v1/devices/{id}/reject
//	  GET    /api/v1/devices/{id}/metrics            range query
//	  GET    /api/v1/devices/{id}/metrics/latest
//	  GET    /api/v1/metrics/query                   one metric over many devices: by labels, or top-N
//	  POST   /api/v1/join-tokens
//	  GET    /api/v1/discovered                      household services on the LAN
//	  GET    /api/v1/events                          Server-Sent Events
//	  GET    /api/v1/alerts                          with Health only
//	  GET    /api/v1/alerts/rules
//	  GET    /api/v1/alerts/rules/{id}
//	  PUT    /api/v1/alerts/rules/{id}
//	  DELETE /api/v1/alerts/rules/{id}
//	  POST   /api/v1/integrations                    with Integrations only
//	  GET    /api/v1/integrations
//	  DELETE /api/v1/integrations/{name}
//	  GET    /api/v1/integrations/{name}/metrics     range query over the series an integration pushed
//	  POST   /api/v1/integrations/{name}/metrics     with IntegrationMetrics; HTTP Basic of the account itself
//	  GET    /api/v1/config                          with Configs only: kinds and their schemas
//	  GET    /api/v1/config/{kind}                   every document's latest version
//	  GET    /api/v1/config/{kind}/{scope}           scope: default, device:<id>, selector:<k=v,…>; ETag
//	  PUT    /api/v1/config/{kind}/{scope}           If-Match (or If-None-Match: *); 412 on a lost race
//	  GET    /api/v1/config/{kind}/{scope}/versions
//	  GET    /api/v1/config/{kind}/{scope}/versions/{n}
//	  GET    /api/v1/config/{kind}/{scope}/diff      ?from=N&to=M
//	  POST   /api/v1/config/{kind}/{scope}/rollback  a new version with an old one's content
//	  GET    /api/v1/devices/{id}/config/{kind}      effective config, with the layer of every value
//	  GET    /api/v1/config-export                   every document with every version, one file
//	  POST   /api/v1/config-import                   ?dry_run=true|false; 409 with the report on a conflict
//	  GET    /api/v1/rollouts                        with Configs and Rollouts only; newest first
//	  GET    /api/v1/rollouts/{id}
//	  POST   /api/v1/rollouts/{id}/pause
//	  POST   /api/v1/rollouts/{id}/resume
//	  POST   /api/v1/rollouts/{id}/cancel            the old version written back
//	  GET    /api/v1/jobs                            with Jobs only; each with its next fire and state
//	  POST   /api/v1/jobs                            a new job (201, ETag "1")
//	  POST   /api/v1/jobs/preview                    ?n=10; the next fires of a trigger, with DST notes
//	  GET    /api/v1/jobs/{id}
//	  PUT    /api/v1/jobs/{id}                       If-Match (or If-None-Match: *); 412 on a lost race
//	  DELETE /api/v1/jobs/{id}                       If-Match
//	  GET    /api/v1/jobs/{id}/versions
//	  GET    /api/v1/jobs/{id}/runs                  ?limit=N; newest first
//	  GET    /api/v1/jobs/{id}/next                  ?n=10
//	  POST   /api/v1/jobs/{id}/pause
//	  POST   /api/v1/jobs/{id}/resume
//	  POST   /api/v1/jobs/{id}/run                   now, once (202)
//	  POST   /api/v1/devices/{id}/commands           with Commands only
//	  GET    /api/v1/devices/{id}/commands/{cid}
//	  GET    /api/v1/audit
//	  GET    /api/v1/backup                          with Backup only: the whole hub (store, CA, admin token)
//
// Any other path or method is a 404 or 405 problem. Request bodies are
// read by one strict decoder (decode.go). The errors of the hub's services
// are answered by one function (writeError, problem.go) whose table maps
// each sentinel, and each kind of hub/enrol error, to a status; an error
// it does not know is the hub's own failure: logged with its text, and
// answered 500 with a generic detail that never echoes it.
package api
