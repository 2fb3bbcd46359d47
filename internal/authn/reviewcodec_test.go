package authn

import (
	"encoding/json"
	"reflect"
	"testing"
)

// reviewBodies probe the fast decoder's grammar and the cases it must hand to encoding/json.
var reviewBodies = []string{
	`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"a.b.c","audiences":["x","y"]}}`,
	` { "kind" : "TokenReview" , "apiVersion":"authentication.k8s.io/v1beta1", "metadata":{"creationTimestamp":null,"labels":{"a":"b"}},` +
		` "spec":{"token":"t","audiences":[]}, "status":{"user":{},"authenticated":false,"n":[1,-2.5e+3,0,true,null,{"x":[]}]}} ` + "\n",
	`{"spec":{"token":"first"},"spec":{"audiences":["merged"]},"kind":"TokenReview","kind":"TokenReview"}`,
	`{"spec":{"audiences":["a"],"audiences":["b"]}}`,
	`{"spec":{"audiences":null}}`,
	`{}`, `{"kind":"TokenReview"}`, `{"apiVersion":"x","spec":{}}`, "{\"x\":[0,-0,1.5,2e10,3E-2,-1.0e+5,\"\x7f\"]}\r\n\t ",
	`{"spec":null}`,
	`{"Kind":"TokenReview"}`,
	`{"SPEC":{"token":"x"}}`,
	`{"spec":{"Token":"x"}}`,
	`{"kind":"Token\u0052eview"}`,
	`{"kind":"TokenReview\\"}`,
	`{"spec":{"token":"caf` + "\xc3\xa9" + `"}}`,
	`{"spec":{"token":"bad` + "\xff" + `"}}`,
	`{"spec":{"token":"tab	inside"}}`,
	`{"kind":5}`,
	`{"spec":{"audiences":[1]}}`,
	`{"spec":{"audiences":"x"}}`,
	`{"x":01}`, `{"x":-}`, `{"x":1.}`, `{"x":1e}`, `{"x":.5}`, `{"x":tru}`, `{"x":nul}`,
	`{"a":1,}`, `{,}`, `{"a"}`, `{"a":1}x`, `{"a":1}{}`, `[]`, `null`, ``, ` `, `{`, `"x"`,
	`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	"\xef\xbb\xbf{}",
}

func TestDecodeReviewFastMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	fast := 0
	for _, body := range reviewBodies {
		if compareReviewDecoders(t, []byte(body)) {
			fast++
		}
	}
	if fast < 8 {
		t.Fatalf("the fast decoder accepted only %d bodies: the comparison proves little", fast)
	}
}

// compareReviewDecoders fails when the fast decoder accepts body and disagrees with encoding/json.
func compareReviewDecoders(t *testing.T, body []byte) (accepted bool) {
	t.Helper()
	got, ok := decodeReviewFast(body)
	if !ok {
		return false
	}
	var want reviewEnvelope
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("fast decoder accepted %q, which encoding/json refuses: %v", body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoders disagree on %q:\nfast %#v\njson %#v", body, got, want)
	}
	return true
}

func FuzzDecodeReviewFast(f *testing.F) {
	for _, b := range reviewBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { compareReviewDecoders(t, body) })
}
