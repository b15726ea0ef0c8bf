package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/sshgate/sshgate/internal/route"
)

// A ContainerSSH config server answers {"config": {...}} with ContainerSSH's
// own configuration structure: a backend name and a docker or kubernetes
// section holding Docker's container and host configuration or a pod. This
// file maps the parts of it that a gate target can take (image,
// environment, bind mounts, memory, CPUs, pids) onto a DockerOverride,
// which Allow then bounds as it bounds a native reply.
//
// ContainerSSH decodes with encoding/json, so keys match without regard to
// case ("Image" and "image" alike); a config server written in Go against
// Docker's types sends every field, most of them zero. Hence the rules:
// keys match case-insensitively but may not appear twice in any case; a
// key this gate does not map is accepted only when its value asks for
// nothing (null, false, 0, "", [] or {} all the way down); anything else,
// such as Privileged, CapAdd, a network mode or a pod's host path volume,
// refuses the whole reply with its path named.

// isContainerSSHReply reports whether data is a JSON object with a
// top-level "config" key in any case. A native reply never has one.
func isContainerSSHReply(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		if k, _ := t.(string); strings.EqualFold(k, "config") {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// object is a JSON object whose keys were folded to lower case, remembering
// how each was spelled for messages.
type object struct {
	path   string
	values map[string]any
	names  map[string]string
}

func asObject(path string, v any) (*object, error) {
	if v == nil {
		return &object{path: path, values: map[string]any{}, names: map[string]string{}}, nil
	}
	m, ok := v.(orderedObject)
	if !ok {
		return nil, fmt.Errorf("%s: want an object", path)
	}
	o := &object{path: path, values: map[string]any{}, names: map[string]string{}}
	for _, kv := range m {
		low := strings.ToLower(kv.key)
		if _, dup := o.values[low]; dup {
			return nil, fmt.Errorf("%s: key %q appears twice", path, route.Printable(kv.key))
		}
		o.values[low] = kv.value
		o.names[low] = kv.key
	}
	return o, nil
}

// take removes and returns the value of key (lower case); nil when absent.
func (o *object) take(key string) any {
	v := o.values[key]
	delete(o.values, key)
	return v
}

// rest refuses every key left that asks for something.
func (o *object) rest() error {
	for k, v := range o.values {
		if !zero(v) {
			return fmt.Errorf("%s.%s is not supported by this gate", o.path, route.Printable(o.names[k]))
		}
	}
	return nil
}

func zero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case json.Number:
		f, err := x.Float64()
		return err == nil && f == 0
	case string:
		return x == ""
	case []any:
		for _, e := range x {
			if !zero(e) {
				return false
			}
		}
		return true
	case orderedObject:
		for _, kv := range x {
			if !zero(kv.value) {
				return false
			}
		}
		return true
	}
	return false
}

// orderedObject keeps a JSON object's keys as sent, duplicates included, so
// that a duplicate can be refused rather than silently collapsed.
type orderedObject []keyValue

type keyValue struct {
	key   string
	value any
}

// decodeValue reads one JSON value, objects as orderedObject, numbers as
// json.Number, nesting bounded.
func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > 32 {
		return nil, errors.New("nested too deeply")
	}
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch d := t.(type) {
	case json.Delim:
		switch d {
		case '{':
			var o orderedObject
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				o = append(o, keyValue{k, v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if o == nil {
				o = orderedObject{}
			}
			return o, nil
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return a, nil
		}
		return nil, fmt.Errorf("unexpected %v", d)
	default:
		return t, nil
	}
}

func str(path string, v any) (string, error) {
	if v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: want a string", path)
	}
	return s, nil
}

func strList(path string, v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a list of strings", path)
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%s[%d]: want a string", path, i)
		}
		out = append(out, s)
	}
	return out, nil
}

// integer reads a whole, non-negative JSON number.
func integer(path string, v any) (int64, error) {
	if v == nil {
		return 0, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: want a number", path)
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || i < 0 {
		return 0, fmt.Errorf("%s: want a whole number of at least 0", path)
	}
	return i, nil
}

// parseContainerSSHReply maps a ContainerSSH config server's reply.
func parseContainerSSHReply(data []byte) (ConfigReply, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return ConfigReply{}, fmt.Errorf("config reply: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ConfigReply{}, errors.New("config reply: trailing data after the JSON object")
	}
	top, err := asObject("config reply", v)
	if err != nil {
		return ConfigReply{}, err
	}
	cfg, err := asObject("config", top.take("config"))
	if err != nil {
		return ConfigReply{}, err
	}
	o := &DockerOverride{Env: map[string]string{}}
	// Dynamic metadata beside the config: metadata is ContainerSSH's hand-on
	// to later hooks and changes nothing here; environment entries become
	// the container's environment; files cannot be taken.
	top.take("metadata")
	if env := top.take("environment"); env != nil {
		eo, err := asObject("environment", env)
		if err != nil {
			return ConfigReply{}, err
		}
		for low, ev := range eo.values {
			name := eo.names[low]
			e, err := asObject("environment."+name, ev)
			if err != nil {
				return ConfigReply{}, err
			}
			val, err := str("environment."+name+".value", e.take("value"))
			if err != nil {
				return ConfigReply{}, err
			}
			e.take("sensitive")
			if err := e.rest(); err != nil {
				return ConfigReply{}, err
			}
			o.Env[name] = val
		}
	}
	if err := top.rest(); err != nil {
		return ConfigReply{}, err
	}
	backend, err := str("config.backend", cfg.take("backend"))
	if err != nil {
		return ConfigReply{}, err
	}
	dockerSec, kubeSec := cfg.take("docker"), cfg.take("kubernetes")
	if err := cfg.rest(); err != nil {
		return ConfigReply{}, err
	}
	switch strings.ToLower(backend) {
	case "":
		switch {
		case !zero(dockerSec) && !zero(kubeSec):
			return ConfigReply{}, errors.New("config reply: config has both docker and kubernetes sections and no backend")
		case !zero(kubeSec):
			err = mapKubernetes(o, kubeSec)
		default:
			err = mapDocker(o, dockerSec)
		}
	case "docker":
		if !zero(kubeSec) {
			return ConfigReply{}, errors.New("config reply: config.kubernetes is set but config.backend is docker")
		}
		err = mapDocker(o, dockerSec)
	case "kubernetes":
		if !zero(dockerSec) {
			return ConfigReply{}, errors.New("config reply: config.docker is set but config.backend is kubernetes")
		}
		err = mapKubernetes(o, kubeSec)
	default:
		return ConfigReply{}, fmt.Errorf("config reply: config.backend %q is not supported by this gate (docker or kubernetes)", route.Printable(backend))
	}
	if err != nil {
		return ConfigReply{}, fmt.Errorf("config reply: %w", err)
	}
	r := ConfigReply{ContainerSSH: true}
	if len(o.Env) == 0 {
		o.Env = nil
	}
	if o.Image != "" || o.Env != nil || o.Mounts != nil || o.Memory != 0 || o.CPUs != 0 || o.Pids != 0 {
		r.Docker = o
	}
	return r, nil
}

// mapDocker reads config.docker: ContainerSSH's execution section with
// Docker's container and host configuration in it. The connection and
// timeouts are the gate's own and may not be set.
func mapDocker(o *DockerOverride, v any) error {
	d, err := asObject("config.docker", v)
	if err != nil {
		return err
	}
	exec, err := asObject("config.docker.execution", d.take("execution"))
	if err != nil {
		return err
	}
	if err := d.rest(); err != nil {
		return err
	}
	if mode, err := str("config.docker.execution.mode", exec.take("mode")); err != nil {
		return err
	} else if mode != "" && mode != "connection" {
		return fmt.Errorf("config.docker.execution.mode %q is not supported by this gate (connection)", route.Printable(mode))
	}
	// ContainerSSH's own knobs for its agent and pulls: this gate brings its
	// own agent and never pulls, so the values ContainerSSH users leave at
	// their defaults change nothing.
	for _, k := range []string{"agentpath", "idlecommand", "shellcommand", "subsystems"} {
		exec.take(k)
	}
	if p, err := str("config.docker.execution.imagePullPolicy", exec.take("imagepullpolicy")); err != nil {
		return err
	} else if p != "" && p != "Never" && p != "IfNotPresent" {
		return fmt.Errorf("config.docker.execution.imagePullPolicy %q: this gate never pulls images", route.Printable(p))
	}
	c, err := asObject("config.docker.execution.container", exec.take("container"))
	if err != nil {
		return err
	}
	h, err := asObject("config.docker.execution.host", exec.take("host"))
	if err != nil {
		return err
	}
	if err := exec.rest(); err != nil {
		return err
	}
	if o.Image, err = str(c.path+".image", c.take("image")); err != nil {
		return err
	}
	env, err := strList(c.path+".env", c.take("env"))
	if err != nil {
		return err
	}
	for _, e := range env {
		k, val, ok := strings.Cut(e, "=")
		if !ok || !ValidEnvName(k) {
			return fmt.Errorf("%s.env: %q is not NAME=VALUE", c.path, route.Printable(e))
		}
		o.Env[k] = val
	}
	if err := c.rest(); err != nil {
		return err
	}
	if o.Mounts, err = strList(h.path+".binds", h.take("binds")); err != nil {
		return err
	}
	if o.Memory, err = integer(h.path+".memory", h.take("memory")); err != nil {
		return err
	}
	cpus, err := integer(h.path+".nanoCpus", h.take("nanocpus"))
	if err != nil {
		return err
	}
	o.CPUs = float64(cpus) / 1e9
	if o.Pids, err = integer(h.path+".pidsLimit", h.take("pidslimit")); err != nil {
		return err
	}
	return h.rest()
}

// mapKubernetes reads config.kubernetes: a pod whose first container is
// the one users land in. Its image, env and resource limits map; the
// namespace, volumes and everything else that asks for something do not.
func mapKubernetes(o *DockerOverride, v any) error {
	k, err := asObject("config.kubernetes", v)
	if err != nil {
		return err
	}
	pod, err := asObject("config.kubernetes.pod", k.take("pod"))
	if err != nil {
		return err
	}
	if err := k.rest(); err != nil {
		return err
	}
	if mode, err := str("config.kubernetes.pod.mode", pod.take("mode")); err != nil {
		return err
	} else if mode != "" && mode != "connection" {
		return fmt.Errorf("config.kubernetes.pod.mode %q is not supported by this gate (connection)", route.Printable(mode))
	}
	for _, key := range []string{"agentpath", "idlecommand", "shellcommand", "subsystems", "consolecontainernumber"} {
		pod.take(key)
	}
	meta := pod.take("metadata") // the gate names and labels its pods itself
	if m, err := asObject("config.kubernetes.pod.metadata", meta); err != nil {
		return err
	} else {
		m.take("generatename")
		m.take("labels")
		m.take("annotations")
		if err := m.rest(); err != nil {
			return err
		}
	}
	spec, err := asObject("config.kubernetes.pod.spec", pod.take("spec"))
	if err != nil {
		return err
	}
	if err := pod.rest(); err != nil {
		return err
	}
	var containers []any
	if cv := spec.take("containers"); cv != nil {
		a, ok := cv.([]any)
		if !ok {
			return errors.New("config.kubernetes.pod.spec.containers: want a list")
		}
		containers = a
	}
	if err := spec.rest(); err != nil {
		return err
	}
	if len(containers) > 1 {
		return errors.New("config.kubernetes.pod.spec.containers: this gate runs one container per pod")
	}
	if len(containers) == 0 {
		return nil
	}
	c, err := asObject("config.kubernetes.pod.spec.containers[0]", containers[0])
	if err != nil {
		return err
	}
	c.take("name")
	if o.Image, err = str(c.path+".image", c.take("image")); err != nil {
		return err
	}
	if p, err := str(c.path+".imagePullPolicy", c.take("imagepullpolicy")); err != nil {
		return err
	} else if p != "" && p != "Never" && p != "IfNotPresent" {
		return fmt.Errorf("%s.imagePullPolicy %q: this gate never pulls images", c.path, route.Printable(p))
	}
	if ev := c.take("env"); ev != nil {
		a, ok := ev.([]any)
		if !ok {
			return fmt.Errorf("%s.env: want a list", c.path)
		}
		for i, e := range a {
			eo, err := asObject(fmt.Sprintf("%s.env[%d]", c.path, i), e)
			if err != nil {
				return err
			}
			name, err := str(eo.path+".name", eo.take("name"))
			if err != nil {
				return err
			}
			val, err := str(eo.path+".value", eo.take("value"))
			if err != nil {
				return err
			}
			if !ValidEnvName(name) {
				return fmt.Errorf("%s.name %q is invalid", eo.path, route.Printable(name))
			}
			if err := eo.rest(); err != nil { // valueFrom reads secrets of the cluster
				return err
			}
			o.Env[name] = val
		}
	}
	res, err := asObject(c.path+".resources", c.take("resources"))
	if err != nil {
		return err
	}
	if err := c.rest(); err != nil {
		return err
	}
	lim, err := asObject(res.path+".limits", res.take("limits"))
	if err != nil {
		return err
	}
	res.take("requests") // the limit is what bounds; a request alone reserves and asks nothing of the gate
	if err := res.rest(); err != nil {
		return err
	}
	if mem, err := str(lim.path+".memory", lim.take("memory")); err != nil {
		return err
	} else if mem != "" {
		if o.Memory, err = quantity(mem); err != nil {
			return fmt.Errorf("%s.memory: %w", lim.path, err)
		}
	}
	if cpu, err := str(lim.path+".cpu", lim.take("cpu")); err != nil {
		return err
	} else if cpu != "" {
		if o.CPUs, err = cpuQuantity(cpu); err != nil {
			return fmt.Errorf("%s.cpu: %w", lim.path, err)
		}
	}
	return lim.rest()
}

// quantity parses a Kubernetes memory quantity ("512Mi", "1G", "1048576").
func quantity(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	}
	mult := 1.0
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f > 0) || math.IsInf(f*mult, 0) || f*mult > 1<<50 {
		return 0, fmt.Errorf("%q is not a memory quantity", route.Printable(s))
	}
	return int64(f * mult), nil
}

// cpuQuantity parses a Kubernetes CPU quantity ("500m", "2").
func cpuQuantity(s string) (float64, error) {
	num, milli := strings.CutSuffix(s, "m")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) || f > 1e6 {
		return 0, fmt.Errorf("%q is not a CPU quantity", route.Printable(s))
	}
	if milli {
		f /= 1000
	}
	return f, nil
}
