package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"
)

// listAnnotation marks a comma-separated flag, which a config file may
// also give as an array of strings.
const listAnnotation = "muster_list"

// notInFile says why a config file may not set the flag name, or "".
func notInFile(name string) string {
	switch name {
	case "config":
		return "a config file cannot name another"
	case "force-new-cluster":
		return "it is for one start after the Raft state was lost, and a file would repeat it at every start: give it on the command line"
	}
	return ""
}

// resolveFlags fills every flag the command line left unset: from its
// environment variable if that is set and not empty, else from the
// --config file (or MUSTER_CONFIG) if that has it. So a value comes from
// the flag, else the environment, else the file, else the default. Env
// and file values go through the flag's own parser, so they are checked
// as the flag is.
func resolveFlags(fs *pflag.FlagSet, getenv func(string) string) error {
	setFromEnv := func(f *pflag.Flag) error {
		name := flagEnv(f)
		if f.Changed || name == "" || getenv(name) == "" {
			return nil
		}
		if err := set(f, getenv(name)); err != nil {
			return usagef("%s=%q: %v", name, getenv(name), err)
		}
		return nil
	}
	// The config file's name first: it may come from the environment.
	if err := setFromEnv(fs.Lookup("config")); err != nil {
		return err
	}
	var file *configFile
	if path := fs.Lookup("config").Value.String(); path != "" {
		var err error
		if file, err = loadConfigFile(path, fs); err != nil {
			return err
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if err = setFromEnv(f); err != nil || f.Changed || file == nil {
			return
		}
		if v, ok := file.values[f.Name]; ok {
			if e := set(f, v); e != nil {
				err = usagef("config file %s: %s = %q: %v", file.path, f.Name, v, e)
			}
		}
	})
	return err
}

// set gives f the value v, as if on the command line. (FlagSet.Set would
// wrap the parser's error in one that names the flag as a flag.)
func set(f *pflag.Flag, v string) error {
	if err := f.Value.Set(v); err != nil {
		return err
	}
	f.Changed = true
	return nil
}

// configFile is a TOML file of flag values, keyed by the flags' names.
type configFile struct {
	path   string
	values map[string]string // by flag name, as the flag would be given it
}

// loadConfigFile reads path. A key that names no flag of fs, or a value
// of the wrong TOML type, is an error naming the key.
func loadConfigFile(path string, fs *pflag.FlagSet) (*configFile, error) {
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return nil, usagef("config file %s: %v", path, err)
	}
	cf := &configFile{path: path, values: map[string]string{}}
	for _, key := range md.Keys() {
		if len(key) != 1 {
			continue // inside a table, whose own key is refused
		}
		name := key[0]
		f := fs.Lookup(name)
		if why := notInFile(name); why != "" {
			return nil, usagef("config file %s: %s: %s", path, name, why)
		}
		if f == nil || name == "help" {
			msg := fmt.Sprintf("config file %s: unknown key %q", path, name)
			if alt := strings.ReplaceAll(name, "_", "-"); alt != name && fs.Lookup(alt) != nil {
				msg += fmt.Sprintf(`; did you mean %q?`, alt)
			} else {
				msg += " (the keys are the flags' names, as muster server -h lists them)"
			}
			return nil, usageError(msg)
		}
		v, err := fileValue(f, raw[name])
		if err != nil {
			return nil, usagef("config file %s: %s: %v", path, name, err)
		}
		cf.values[name] = v
	}
	return cf, nil
}

// fileValue turns a TOML value into the text the flag f parses, if its
// type suits the flag's.
func fileValue(f *pflag.Flag, v any) (string, error) {
	want := "a string"
	switch f.Value.Type() {
	case "bool":
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		want = "true or false"
	case "int", "int64":
		if i, ok := v.(int64); ok {
			return strconv.FormatInt(i, 10), nil
		}
		want = "an integer"
	case "float64":
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		}
		want = "a number"
	case "duration":
		if s, ok := v.(string); ok {
			return s, nil
		}
		want = `a duration string such as "10s"`
	default: // strings, and enums
		if s, ok := v.(string); ok {
			return s, nil
		}
		if list, ok := v.([]any); ok && len(f.Annotations[listAnnotation]) > 0 {
			var parts []string
			for _, x := range list {
				s, ok := x.(string)
				if !ok {
					return "", fmt.Errorf("want an array of strings, got an element %s", tomlType(x))
				}
				parts = append(parts, s)
			}
			return strings.Join(parts, ","), nil
		}
		if len(f.Annotations[listAnnotation]) > 0 {
			want = "a string or an array of strings"
		}
	}
	return "", fmt.Errorf("want %s, got %s", want, tomlType(v))
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}
