package localcluster

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzState: a cluster.json of any shape is read or refused with an
// error; one that is read names the cluster asked for, and every process
// it would signal has a PID and a program.
func FuzzState(f *testing.F) {
	good, err := json.Marshal(Cluster{Name: "hitless", Dir: "/h/clusters/hitless", Created: time.Unix(1, 0),
		Processes: []Process{{Name: "etcd", PID: 42, Binary: "/bin/etcd"}}, Ports: map[string]int{"etcd": 2379}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"name":"hitless","processes":[{"pid":1,"binary":""}]}`))
	f.Add([]byte(`{"name":"hitless","ports":{"x":0}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseState("hitless", b)
		if err != nil {
			return
		}
		if c.Name != "hitless" {
			t.Fatalf("read the state of %q as hitless's", c.Name)
		}
		for _, p := range c.Processes {
			if p.PID <= 0 || p.Binary == "" {
				t.Fatalf("process %+v accepted", p)
			}
		}
		for k, p := range c.Ports {
			if p < 1 || p > 65535 {
				t.Fatalf("port %s = %d accepted", k, p)
			}
		}
	})
}
