// Prints kstatus's verdict (as Flux computes it) for each object of a JSON list on stdin:
// one line per object, "<status>\t<message>".
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		panic(err)
	}
	var objects []json.RawMessage
	if err := json.Unmarshal(data, &objects); err != nil {
		panic(err)
	}
	for _, raw := range objects {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			panic(err)
		}
		res, err := status.Compute(u)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s\t%s\n", res.Status, res.Message)
	}
}
