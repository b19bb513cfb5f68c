package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// outputFlag defines -o/--output on a command that prints records; ids
// says what -o id prints, such as "the key IDs, one a line".
func outputFlag(cmd *cobra.Command, ids string) *enumValue {
	return enumFlag(cmd, "output", "o", "table",
		"output format: table; json or yaml (the registry's answer, same field names); id ("+ids+")",
		"table", "json", "yaml", "id")
}

// printOut writes v in format: json and yaml show v itself; id writes
// ids one a line; table calls table.
func printOut(w io.Writer, format string, v any, ids []string, table func(io.Writer) error) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		return printYAML(w, v)
	case "id":
		for _, id := range ids {
			if _, err := fmt.Fprintln(w, id); err != nil {
				return err
			}
		}
		return nil
	}
	return table(w)
}

// hostPort writes an address and port as host:port, in brackets for an
// IPv6 address ([::1]:8080), as every table and message of the CLI shows
// an endpoint.
func hostPort(address string, port int) string {
	return net.JoinHostPort(address, strconv.Itoa(port))
}

// count says how many of noun there are, in the singular or the plural:
// "1 instance", "0 instances", "2 keys". The nouns it is given take an s.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// printYAML writes v as YAML with the field names and order of its JSON:
// the JSON is read as a YAML document (YAML being a superset of JSON)
// and written back in block style.
func printYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	blockStyle(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// blockStyle clears the flow and quoting styles the JSON gave every node;
// the encoder then quotes only the strings that need it.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}
