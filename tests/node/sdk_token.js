// Builds a JWT webhook token with Juspay's own Node SDK (expresscheckout-nodejs), exactly as the
// SDK signs and encrypts its JWE-authenticated requests: JWS RS256 {alg, kid} over the payload,
// serialised as {"header","payload","signature"}, then JWE RSA-OAEP + A256GCM {alg, enc, cty, kid}.
//
//   node sdk_token.js PAYLOAD_FILE KID ENCRYPT_TO_PUBLIC_PEM SIGN_WITH_PRIVATE_PEM
//
// Prints the SDK's JWE object as JSON: {"header","encryptedKey","iv","encryptedPayload","tag"}.
'use strict';

const fs = require('fs');
const path = require('path');

// The SDK's package exports only its client; its JWT helpers live beside the entry point.
const entry = require.resolve('expresscheckout-nodejs');
const security = require(path.join(path.dirname(entry), 'security', 'index.js')).default;

const [payloadFile, kid, publicPem, privatePem] = process.argv.slice(2);
if (!privatePem) {
  process.stderr.write('usage: node sdk_token.js PAYLOAD_FILE KID PUBLIC_PEM PRIVATE_PEM\n');
  process.exit(2);
}
const payload = fs.readFileSync(payloadFile, 'utf8');
const publicKey = security.Keys.readPublicKey(fs.readFileSync(publicPem, 'utf8'));
const privateKey = security.Keys.readPrivateKey(fs.readFileSync(privatePem, 'utf8'));
const jwe = security.JWT.jwtEncrypt(payload, kid, publicKey, privateKey);
process.stdout.write(JSON.stringify(jwe));
