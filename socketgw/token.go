package socketgw

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// TokenFile is the name of the session token file inside the run dir.
const TokenFile = "system.token"

// Token is the node's session token. Every way of printing it redacts it;
// only Hex reveals it, for writing the token file.
type Token [32]byte

const redacted = "[redacted]"

func (Token) String() string                 { return redacted }
func (Token) GoString() string               { return redacted }
func (Token) LogValue() slog.Value           { return slog.StringValue(redacted) }
func (t Token) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Hex returns the token as 64 lowercase hex digits.
func (t Token) Hex() string { return hex.EncodeToString(t[:]) }

// matches reports in constant time whether s is the token's hex form.
// Bad hex and a wrong token are indistinguishable to the caller.
func (t *Token) matches(s string) bool {
	var got [32]byte
	// Decode into a fixed buffer so a wrong length still costs a compare.
	ok := len(s) == 2*len(got)
	if ok {
		_, err := hex.Decode(got[:], []byte(s))
		ok = err == nil
	}
	eq := subtle.ConstantTimeCompare(got[:], t[:]) == 1
	return ok && eq
}

func newToken() (Token, error) {
	var t Token
	if _, err := rand.Read(t[:]); err != nil {
		return t, fmt.Errorf("generating session token: %w", err)
	}
	return t, nil
}

// writeTokenFile writes the token atomically: a 0600 temp file in the
// same directory, synced, then renamed over path. Clients never see a
// partial token.
func writeTokenFile(path string, t *Token) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(t.Hex())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing token file: %w", err)
	}
	return nil
}
