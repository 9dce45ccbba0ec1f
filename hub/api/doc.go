// Package api is the hub's REST API on net/http.ServeMux: health, devices,
// join tokens, agent enrolment and bootstrap, and the hand-written OpenAPI
// document (openapi.yaml, embedded and served at /api/v1/openapi.yaml).
//
// Errors are application/problem+json (RFC 9457). Every /api/v1 route
// needs the admin bearer token except the two an agent uses before it has
// credentials: POST /api/v1/enroll (which needs a join token instead) and
// GET /api/v1/bootstrap (public facts only). The package defines the small
// interfaces it consumes; only the hub's composition root wires them.
package api
