// A token-exchange server (RFC 8693) built on @jmondi/oauth2-server 4.x, for jwt-relay's
// interoperability test (tests/interop_jmondi.rs). The library's token response carries no
// `issued_token_type`, which RFC 8693 §2.2.1 requires: jwt-relay must accept such an answer
// when the token it holds still verifies for the same user.
//
// Configuration, from the environment (the test sets every variable):
//   JMONDI_ISSUER          the `iss` of the tokens it accepts and issues
//   JMONDI_SIGNING_JWK     a private EC P-256 JWK with a `kid`: it signs issued tokens (ES256)
//                          and verifies subject tokens
//   JMONDI_CLIENT_ID       the one client it knows ...
//   JMONDI_CLIENT_SECRET   ... and its secret (client_secret_basic or client_secret_post)
//   JMONDI_ACCEPT_EXPIRED_FOR  how many seconds after its `exp` a subject token is still
//                          exchanged (default 3600)
//
// It listens on 127.0.0.1, on a free port, prints `{"listening":PORT}` on standard output once
// it accepts connections, serves `POST /token`, and stops when its standard input closes.
// It never prints a token, a key or the secret.

import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { createServer } from "node:http";

import {
  AuthorizationServer,
  DateInterval,
  OAuthException,
  OAuthRequest,
} from "@jmondi/oauth2-server";
import { handleVanillaError } from "@jmondi/oauth2-server/vanilla";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const MAX_BODY = 64 * 1024;

function setting(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`jmondi interop server: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const issuer = setting("JMONDI_ISSUER");
const jwk = JSON.parse(setting("JMONDI_SIGNING_JWK"));
const clientId = setting("JMONDI_CLIENT_ID");
const clientSecret = setting("JMONDI_CLIENT_SECRET");
const acceptExpiredFor = Number(process.env.JMONDI_ACCEPT_EXPIRED_FOR ?? "3600");

const privateKey = createPrivateKey({ key: jwk, format: "jwk" });
const publicKey = createPublicKey(privateKey);

// ES256 JWS, compact form (RFC 7515), with node's own crypto.
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const json64 = (value) => b64url(JSON.stringify(value));

function signJws(payload) {
  const input = `${json64({ alg: "ES256", typ: "JWT", kid: jwk.kid })}.${json64(payload)}`;
  const signature = sign("sha256", Buffer.from(input), { key: privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64url(signature)}`;
}

/** The claims of a JWS this server signed, or `undefined`. */
function readJws(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) return undefined;
  try {
    const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
    if (header.alg !== "ES256") return undefined;
    const good = verify(
      "sha256",
      Buffer.from(`${parts[0]}.${parts[1]}`),
      { key: publicKey, dsaEncoding: "ieee-p1363" },
      Buffer.from(parts[2], "base64url"),
    );
    return good ? JSON.parse(Buffer.from(parts[1], "base64url").toString()) : undefined;
  } catch {
    return undefined;
  }
}

// The library's JwtInterface: its access tokens are signed here.
const jwt = {
  async sign(payload) {
    return signJws(payload);
  },
  async verify(token) {
    const claims = readJws(token);
    if (!claims) throw new Error("invalid token");
    return claims;
  },
  decode(token) {
    try {
      return JSON.parse(Buffer.from(String(token).split(".")[1], "base64url").toString());
    } catch {
      return null;
    }
  },
};

// In-memory repositories: one client, allowed the token-exchange grant only; no scopes.
const client = {
  id: clientId,
  name: clientId,
  secret: clientSecret,
  redirectUris: [],
  allowedGrants: [TOKEN_EXCHANGE],
  scopes: [],
};

const clientRepository = {
  async getByIdentifier(id) {
    if (id !== clientId) throw OAuthException.invalidClient("unknown client");
    return client;
  },
  async isClientValid(grantType, found, secret) {
    return found.secret === secret && found.allowedGrants.includes(grantType);
  },
};

let issued = 0;
const tokenRepository = {
  async issueToken(forClient, scopes, user) {
    issued += 1;
    return {
      accessToken: `jmondi-${process.pid}-${issued}`,
      accessTokenExpiresAt: new Date(),
      client: forClient,
      user,
      scopes,
    };
  },
  async issueRefreshToken(accessToken) {
    return accessToken;
  },
  async persist() {},
  async revoke() {},
  async isRefreshTokenRevoked() {
    return true;
  },
  async getByRefreshToken() {
    throw OAuthException.invalidGrant("no refresh tokens here");
  },
};

const scopeRepository = {
  async getAllByIdentifiers() {
    return [];
  },
  async finalize(scopes) {
    return scopes;
  },
};

/** RFC 8693: the subject token must be one of this server's, for any audience, not expired
 * longer than the window. The new token is for the same user. */
async function processTokenExchange({ subjectToken }) {
  const claims = readJws(subjectToken);
  if (!claims) throw OAuthException.invalidGrant("the subject token does not verify");
  if (claims.iss !== issuer) throw OAuthException.invalidGrant("the subject token is not from this issuer");
  if (typeof claims.sub !== "string" || claims.sub === "") {
    throw OAuthException.invalidGrant("the subject token has no `sub`");
  }
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== "number" || now - claims.exp > acceptExpiredFor) {
    throw OAuthException.invalidGrant("the subject token expired too long ago");
  }
  return { id: claims.sub };
}

const authorizationServer = new AuthorizationServer(clientRepository, tokenRepository, scopeRepository, jwt, {
  issuer,
});
authorizationServer.enableGrantType({ grant: TOKEN_EXCHANGE, processTokenExchange }, new DateInterval("5m"));

function readBody(request) {
  return new Promise((resolve, reject) => {
    let body = "";
    request.setEncoding("utf8");
    request.on("data", (chunk) => {
      body += chunk;
      if (body.length > MAX_BODY) reject(new Error("request body too large"));
    });
    request.on("end", () => resolve(body));
    request.on("error", reject);
  });
}

const server = createServer(async (request, response) => {
  const path = new URL(request.url ?? "/", "http://localhost").pathname;
  if (request.method !== "POST" || path !== "/token") {
    response.writeHead(404).end();
    return;
  }
  let answer;
  try {
    const body = Object.fromEntries(new URLSearchParams(await readBody(request)));
    const oauthRequest = new OAuthRequest({ headers: request.headers, body });
    answer = await authorizationServer.respondToAccessTokenRequest(oauthRequest);
  } catch (e) {
    answer = handleVanillaError(e);
  }
  response.writeHead(answer.status, answer.headers);
  response.end(JSON.stringify(answer.body));
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});

// The test holds standard input open while it needs the server.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
