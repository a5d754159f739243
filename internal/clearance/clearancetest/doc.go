// Package clearancetest runs a local emulator of the Clearance security token
// service (STS), in the style of net/http/httptest.
//
// The emulator implements what the vendor documents about the STS: a base
// address ending in "/connect", an OAuth 2.0 token endpoint "<base>/token" that
// accepts the RFC 7523 JWT-bearer grant (form-encoded as in the curl sample, or
// JSON as in the Node and Python samples), OpenID discovery and a JWKS. It
// verifies every assertion as strictly as a real authorization server would
// (signature, kid, iss, sub, exp, nbf, iat, lifetime, jti replay, optional aud)
// and issues real RS256 access tokens that verify against its published JWKS.
//
// Tests can make it misbehave: fail requests with arbitrary statuses and bodies,
// mutate otherwise successful responses, add latency, drop connections, stop
// listening and come back on the same address, revoke client keys and move its
// clock. Counters and a bounded history of decoded requests let tests assert on
// what the client sent.
//
// The emulator deliberately shares no code with package clearance (the client it
// is used to verify): the connection-file parser and the assertion checks here
// are written independently so that a bug in one is not mirrored in the other.
//
// Error responses follow RFC 6749 §5.2: a JSON object with "error" and
// "error_description". Problems with the request itself are invalid_request; a
// grant type other than JWT-bearer is unsupported_grant_type; a missing,
// unknown or revoked client_id is invalid_client; every problem with the
// assertion (format, alg, kid, signature, iss, sub, aud, jti, times) is
// invalid_grant, as RFC 7523 §3.1 prescribes. All are sent with status 400,
// which is what IdentityServer-style services (whose /connect/token and
// /.well-known/openid-configuration/jwks layout the vendor's STS shares) do;
// WithInvalidClientStatus(401) switches invalid_client to the 401 that RFC 6749
// also allows. Descriptions of time problems name the claim and say "check the
// client's clock". Descriptions never repeat request input.
//
// The emulator only listens on loopback addresses. Its admin endpoints under
// "/_emulator/" answer loopback peers only.
package clearancetest
