package convert

import (
	"fmt"
	"regexp"
	"strconv"
)

// UIDClaimExpression is the CEL expression an OpenIDConnect uses for an authenticator's
// claimMappings.uid.claim, which it cannot name directly. kube-apiserver reads the claim as a JSON
// string: a missing claim and one of another type refuse the token, and null gives an empty uid. The
// expression does the same: indexing a missing claim is an error, a value that is not a string fails
// the uid mapping, and null is mapped to "".
func UIDClaimExpression(claim string) string {
	q := strconv.Quote(claim) // Go's escapes (\", \\, \n, \xHH, \uHHHH, ...) are all CEL escapes too
	return fmt.Sprintf(`claims[%s] == null ? "" : claims[%s]`, q, q)
}

var uidClaimPattern = regexp.MustCompile(`^claims\[("(?:[^"\\]|\\.)*")\] == null \? "" : claims\[("(?:[^"\\]|\\.)*")\]$`)

// uidClaimFromExpression recognizes an expression UIDClaimExpression wrote and returns its claim.
func uidClaimFromExpression(expr string) (string, bool) {
	m := uidClaimPattern.FindStringSubmatch(expr)
	if m == nil || m[1] != m[2] {
		return "", false
	}
	claim, err := strconv.Unquote(m[1])
	if err != nil || UIDClaimExpression(claim) != expr {
		return "", false
	}
	return claim, true
}
