/* Error codes of the whole station: 0 is success, every failure is a negative code from the
 * one table below, which also yields the code's name and its short message. Functions that can
 * say more (which field, which value) also fill a caller's message buffer; see st_errf(). */
#ifndef ST_ERR_H
#define ST_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* X(NAME, "short message"). Append within a section; codes are not persisted anywhere, so
 * their numbers may change between builds (names are stable: reports use the names). */
#define ST_ERR_MAP(X)                                                                          \
	/* General */                                                                          \
	X(NOMEM, "out of memory")                                                              \
	X(INVAL, "invalid argument")                                                           \
	X(IO, "input/output error")                                                            \
	X(NOTFOUND, "not found")                                                               \
	X(EXISTS, "already exists")                                                            \
	X(USAGE, "bad command line")                                                           \
	X(CONFIG, "bad configuration")                                                         \
	X(CRYPTO, "cryptographic library error")                                               \
	X(TIMEOUT, "timed out")                                                                \
	X(INTERNAL, "internal error")                                                          \
	/* Signers (drivers/signer/) */                                                        \
	X(SIGNER_UNKNOWN, "unknown signer backend")                                            \
	X(SIGNER_URI, "bad PKCS#11 URI")                                                       \
	X(SIGNER_MODULE, "cannot load PKCS#11 module")                                         \
	X(SIGNER_TOKEN, "PKCS#11 token not found")                                             \
	X(SIGNER_KEY, "signing key not found")                                                 \
	X(SIGNER_PIN, "PIN rejected")                                                          \
	X(SIGNER_NOPIN, "no PIN given")                                                        \
	X(SIGNER_SESSION, "HSM session lost")                                                  \
	X(SIGNER_DEVICE, "HSM unavailable")                                                    \
	X(SIGNER_FAILED, "signing failed")                                                     \
	X(SIGNER_MECH, "signing mechanism not supported")                                      \
	X(SIGNER_BADSIG, "signature from the signer does not verify")                          \
	/* CSR policy (station/pki/policy.c): one code per reason a CSR is rejected */         \
	X(CSR_EMPTY, "CSR is empty")                                                           \
	X(CSR_TOO_LARGE, "CSR is larger than the limit")                                       \
	X(CSR_FORMAT, "CSR is neither PEM nor DER")                                            \
	X(CSR_PEM, "CSR PEM is malformed")                                                     \
	X(CSR_PEM_LABEL, "PEM block is not a CERTIFICATE REQUEST")                             \
	X(CSR_MULTIPLE, "more than one CSR given")                                             \
	X(CSR_TRAILING, "trailing data after the CSR")                                         \
	X(CSR_DER, "CSR DER is malformed")                                                     \
	X(CSR_VERSION, "CSR version is not 1 (value 0)")                                       \
	X(CSR_KEY_TYPE, "CSR key type not allowed")                                            \
	X(CSR_KEY_CURVE, "CSR key curve not allowed")                                          \
	X(CSR_KEY_CURVE_UNSUPPORTED, "CSR key curve not supported")                            \
	X(CSR_KEY_SIZE, "CSR key size not allowed")                                            \
	X(CSR_KEY_POINT, "CSR public key point is invalid")                                    \
	X(CSR_SIGALG, "CSR signature algorithm not allowed")                                   \
	X(CSR_SIGALG_SHA1, "CSR is signed with SHA-1")                                         \
	X(CSR_SIGALG_RSA, "CSR is signed with RSA")                                            \
	X(CSR_SIGALG_EDDSA, "CSR is signed with EdDSA")                                        \
	X(CSR_SIGALG_PARAMS, "CSR signature algorithm has parameters")                         \
	X(CSR_SIGNATURE, "CSR self-signature does not verify")                                 \
	X(CSR_SIGNATURE_DER, "CSR signature value is malformed")                               \
	X(CSR_SUBJECT_EXTRA, "CSR subject has an attribute that is not allowed")               \
	X(CSR_SUBJECT_DUP, "CSR subject repeats an attribute")                                 \
	X(CSR_SUBJECT_MULTI_RDN, "CSR subject has a multi-valued RDN")                         \
	X(CSR_CN_MISSING, "CSR subject has no common name")                                    \
	X(CSR_CN_MISMATCH, "CSR common name is not the expected device id")                    \
	X(CSR_OU_MISSING, "CSR subject has no organizational unit")                            \
	X(CSR_OU_MISMATCH, "CSR organizational unit is not the factory")                       \
	X(CSR_BC_MISSING, "CSR lacks businessCategory=production")                             \
	X(CSR_BC_UNEXPECTED, "CSR has businessCategory but the policy is not production")      \
	X(CSR_BC_MISMATCH, "CSR businessCategory is not production")                           \
	X(CSR_STRING_TYPE, "CSR subject string type not allowed")                              \
	X(CSR_PRINTABLE, "CSR PrintableString has a character outside its set")                \
	X(CSR_CONTROL_CHAR, "CSR subject contains a control character")                        \
	X(CSR_UTF8, "CSR subject is not valid UTF-8")                                          \
	X(CSR_UPPER_BOUND, "CSR subject value exceeds its RFC 5280 upper bound")               \
	X(CSR_REQ_CA, "CSR requests CA:TRUE")                                                  \
	X(CSR_REQ_KEYCERTSIGN, "CSR requests keyCertSign or cRLSign")                          \
	X(CSR_ATTRIBUTE, "CSR carries an attribute that is not allowed")                       \
	X(CSR_CHALLENGE_PASSWORD, "CSR carries a challengePassword")                           \
	X(CSR_EXTENSION, "CSR extension request is malformed")                                 \
	/* Issuance (station/pki/issue.c, ca.c, x509sign.c) */                                 \
	X(ISSUE_CA_EXPIRED, "CA certificate has expired or is not yet valid")                  \
	X(ISSUE_PAST_CA, "certificate would outlive the CA")                                   \
	X(ISSUE_SERIAL, "cannot derive a serial number")                                       \
	X(ISSUE_CA_OU, "factory does not match the CA's organizational unit")                  \
	X(ISSUE_CA_CERT, "CA certificate is unusable")                                         \
	X(ISSUE_CA_NOT_CA, "CA certificate is not a CA")                                       \
	X(ISSUE_CA_SKI, "CA certificate has no subject key identifier")                        \
	X(ISSUE_CA_KEY, "CA key type or curve not supported")                                  \
	X(ISSUE_CA_KEY_MISMATCH, "signing key does not match the CA certificate")              \
	X(ISSUE_CA_CHAIN, "CA certificate does not chain to the root")                         \
	/* Ledger (station/ledger/ledger.c) */                                                 \
	X(LEDGER_OPEN, "cannot open the ledger")                                               \
	X(LEDGER_IO, "ledger read or write failed")                                            \
	X(LEDGER_CORRUPT, "ledger file is corrupt or not a station ledger")                    \
	X(LEDGER_VERSION, "ledger schema is newer than this station")                          \
	X(LEDGER_BUSY, "ledger is locked by another process")                                  \
	X(LEDGER_DUP_SERIAL, "serial number is already recorded")                              \
	X(LEDGER_DUP_KEY, "public key is already recorded")                                    \
	X(LEDGER_DUP_ID, "device id has another certificate in progress")                      \
	X(LEDGER_STATE, "ledger row is not in a state that allows this")                       \
	X(LEDGER_SQL, "ledger statement failed")                                               \
	/* Profiles and configuration (station/profile/profile.c, station/config/config.c) */  \
	X(PROFILE, "profile is invalid")                                                       \
	X(TEMPLATE, "template is malformed")                                                   \
	X(RENDER_LIMIT, "rendered file exceeds its size limit")                                \
	X(PROFILE_VALUE, "value cannot be written into the profile's files")                   \
	X(PROFILE_DEVICE_ID, "device id does not fit the profile")                             \
	X(PROFILE_NOMATCH, "no profile matches the board")                                     \
	/* Board protocol and ports (drivers/proto/proto.c, drivers/port/) */                  \
	X(PROTO_CRC, "frame CRC mismatch")                                                     \
	X(PROTO_FRAME, "malformed frame")                                                      \
	X(PROTO_TOO_LONG, "frame too long")                                                    \
	X(PROTO_FIELD, "frame field missing or malformed")                                     \
	X(PROTO_REMOTE, "board answered with an error")                                        \
	X(PROTO_TIMEOUT, "board did not answer")                                               \
	X(PORT, "port error")                                                                  \
	X(PORT_UNKNOWN, "unknown port backend")                                                \
	X(PORT_OPEN, "cannot open port")                                                       \
	X(PORT_BAUD, "baud rate not supported")                                                \
	X(PORT_HANGUP, "port hung up")                                                         \
	X(PORT_UNSUPPORTED, "operation not supported by this port")                            \
	/* Signing pool (station/signing/pool.c) */                                            \
	X(POOL_FULL, "signing pool is full")                                                   \
	X(POOL_CLOSED, "signing pool is shut down")                                            \
	X(POOL_KEY_REUSED, "public key is already certified for another device")               \
	X(POOL_ID_OTHER_KEY, "device id already has a certificate for another key")            \
	X(POOL_REISSUE_UNAUTH, "reissue for a device id of another key needs authentication")  \
	/* Production authorizations (station/pki/auth.c, ledger/ledger.c): refusals and consumption */   \
	X(AUTH_FORMAT, "authorization is not a well-formed signed document")                   \
	X(AUTH_SIGNATURE, "authorization signature does not verify (forged or changed)")       \
	X(AUTH_UNTRUSTED, "authorization is not signed under the factory root")                \
	X(AUTH_PURPOSE, "authorization signing key is not certified for authorizations")       \
	X(AUTH_FACTORY, "authorization is for another factory")                                \
	X(AUTH_STATION, "authorization does not name this station")                            \
	X(AUTH_EXPIRED, "authorization has expired")                                           \
	X(AUTH_NOT_YET_VALID, "authorization is not valid yet")                                \
	X(AUTH_EXHAUSTED, "authorization has no units left")                                   \
	X(AUTH_SKU, "no authorization covers this SKU")                                        \
	X(AUTH_CONFLICT, "authorization id is recorded with another document")                 \
	/* Production reports (station/ledger/report.c) */                                            \
	X(REPORT_FORMAT, "report is not a well-formed signed report")                          \
	X(REPORT_SIGNATURE, "report signature does not verify (forged or changed)")            \
	X(REPORT_UNTRUSTED, "report is not signed under the factory root")                     \
	X(REPORT_PURPOSE, "report signing key is not certified for reports")                   \
	X(REPORT_COUNT, "report counts do not match the authorization")                        \
	/* Engine (station/line/engine.c, slot.c): why a board on a slot failed */             \
	X(ENGINE_STOPPING, "the station is stopping")                                          \
	X(SLOT_NO_DEVICE_ID, "board reports no device id")                                     \
	X(SLOT_ID_UNISSUED, "board reports a sequence device id the ledger never issued")      \
	X(SLOT_KEY_STORAGE, "board key storage does not meet the profile")                     \
	X(SLOT_PROFILE_AMBIGUOUS, "more than one profile matches the board")                   \
	X(SLOT_CSR_HASH, "CSR does not match the SHA-256 the board sent")                      \
	X(SLOT_PATH, "file path cannot be written over the board protocol")                    \
	X(SLOT_VERIFY_FILE, "read-back file differs from what was written")                    \
	X(SLOT_VERIFY_POP, "board did not prove possession of its key")                        \
	X(SLOT_BOARD_LEFT, "board left before it was finished")                                \
	X(SLOT_ECHO, "port echoes the station's frames")                                       \
	X(SLOT_RESYNC, "board rebooted or reconnected too often")                              \
	/* HTTP registration server (station/http/) */                                         \
	X(HTTP_LISTEN, "cannot listen on the HTTP address")                                    \
	X(HTTP_TLS, "cannot set up TLS for the HTTP server")                                   \
	X(HTTP_JSON, "request body is not valid JSON")                                         \
	X(HTTP_FIELD, "request field missing or malformed")                                    \
	X(HTTP_TOO_LARGE, "request body exceeds the limit")                                    \
	X(HTTP_METHOD, "method not allowed")                                                   \
	X(HTTP_NOT_FOUND, "no such resource")                                                  \
	X(HTTP_AUTH, "missing or wrong OSF-TOKEN")                                             \
	X(HTTP_GROUP, "group not allowed by the profile")                                      \
	X(HTTP_NO_SOTA, "profile has no sota section to render sota.toml from")                \
	X(HTTP_KEY_STORAGE, "profile requires a secure-element key; HTTP cannot attest one")   \
	X(HTTP_TIMEOUT, "signing did not finish in time")                                      \
	X(HTTP_STOPPING, "the HTTP server is stopping")                                        \
	X(HTTP_HOST, "Host is not a loopback name of this machine")                            \
	X(HTTP_BROWSER, "request sent by a web page")

#define ST__ERR_IDX(name, msg) ST__IDX_##name,
enum st_err_index { ST__IDX_OK_, ST_ERR_MAP(ST__ERR_IDX) ST__IDX_COUNT_ };
#undef ST__ERR_IDX

#define ST__ERR_NEG(name, msg) ST_E_##name = -ST__IDX_##name,
enum st_err { ST_OK = 0, ST_ERR_MAP(ST__ERR_NEG) };
#undef ST__ERR_NEG

/* Short message for a code ("out of memory"); never NULL, also for unknown codes. */
const char *st_strerror(int code);

/* Stable name for a code without the prefix ("CSR_SIGNATURE"); "OK" for 0. */
const char *st_errname(int code);

/* Formats a detailed message into buf (may be NULL) and returns code, so that a failure path
 * reads `return st_errf(buf, len, ST_E_CSR_CN_MISMATCH, "CN is %s, expected %s", a, b);`. */
int st_errf(char *buf, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* snprintf() for messages, which may be cut short: a long device id must not take the rest of
 * the message with it, and gcc's truncation warnings have nothing to say about that. */
void st_msgf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void st_vmsgf(char *buf, size_t len, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* st_errf() and st_msgf() never cut a message silently: one that does not fit ends in "..."
 * (at a character boundary). ST_ERR_MAX is the size of a buffer that carries a cause whole,
 * with its context (which slot, which device): give every buffer a message travels through
 * (an error, a failure reason, an HTTP error body) at least this much. */
#define ST_ERR_MAX 1024

/* Flags of st_escape(). */
enum {
	/* '\' stays as it is, for text whose parts were escaped already (a log line built
	 * from them); without it '\' is written "\\", so that every escape is unambiguous. */
	ST_ESCAPE_KEEP_BACKSLASH = 1u << 0,
	/* Line feeds and tabs stay, and so does a carriage return before a line feed: for a
	 * console capture, read as lines. */
	ST_ESCAPE_LINES = 1u << 1,
};

/* The output size that holds any n input bytes escaped, NUL included. */
#define ST_ESCAPE_SIZE(n) (4 * (size_t)(n) + 1)

/* Makes n bytes from outside (what a board sends, an HTTP client's text, a file's bytes)
 * printable before they go into a message, the view, an event or the ledger: C-style escapes
 * for every control byte ("\n", "\r", "\t", else "\xNN" for 0x00-0x1f and 0x7f), for
 * each byte that is not part of well-formed UTF-8 ("\xNN"), and for the characters that a
 * terminal or a log reader would obey rather than show (C1 controls U+0080-U+009F, line and
 * paragraph separators, bidirectional overrides: "\u202e"). Printable ASCII and UTF-8 stay.
 * Nothing is dropped: text that does not fit in len bytes ends in "..." at an escape or
 * character boundary. Writes a NUL-terminated string into out (len > 0) and returns out,
 * for use as a printf argument. Any thread. */
const char *st_escape(char *out, size_t len, const void *in, size_t n, unsigned flags);

/* st_escape() of the NUL-terminated string s, with no flags. */
const char *st_printable(char *out, size_t len, const char *s);

/* The length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when s does not start one (n > 0). */
size_t st_utf8_len(const unsigned char *s, size_t n);

#endif
