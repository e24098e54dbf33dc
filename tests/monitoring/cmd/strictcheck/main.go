// strictcheck decodes every ServiceMonitor and PrometheusRule in a multi-document YAML stream
// (the chart rendered by `helm template`) strictly into prometheus-operator's own API types:
// an unknown field, a wrong type or a misspelt key fails with the document and the field.
// With -rules FILE it also writes the PrometheusRules' groups as a plain Prometheus rule file,
// for `promtool check rules` and `promtool test rules`.
//
// Usage: helm template ... | strictcheck [-rules rules.yaml] [-want-kinds ServiceMonitor,PrometheusRule]
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// ruleFile is the shape promtool reads: only groups.
type ruleFile struct {
	Groups []monitoringv1.RuleGroup `json:"groups"`
}

func main() {
	rulesOut := flag.String("rules", "", "write the PrometheusRules' groups to this file")
	wantKinds := flag.String("want-kinds", "", "comma-separated kinds that must occur at least once")
	flag.Parse()
	if err := run(os.Stdin, *rulesOut, *wantKinds); err != nil {
		fmt.Fprintln(os.Stderr, "strictcheck:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, rulesOut, wantKinds string) error {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	seen := map[string]int{}
	var rules ruleFile
	var failures []string
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading YAML: %w", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta typeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return fmt.Errorf("reading a document's kind: %w", err)
		}
		if meta.APIVersion != monitoringv1.SchemeGroupVersion.String() {
			continue
		}
		what := meta.Kind + "/" + meta.Metadata.Name
		switch meta.Kind {
		case monitoringv1.ServiceMonitorsKind:
			var sm monitoringv1.ServiceMonitor
			if err := yaml.UnmarshalStrict(doc, &sm); err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", what, err))
				continue
			}
			if len(sm.Spec.Endpoints) == 0 {
				failures = append(failures, what+": spec.endpoints is empty")
			}
		case monitoringv1.PrometheusRuleKind:
			var pr monitoringv1.PrometheusRule
			if err := yaml.UnmarshalStrict(doc, &pr); err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", what, err))
				continue
			}
			if len(pr.Spec.Groups) == 0 {
				failures = append(failures, what+": spec.groups is empty")
			}
			rules.Groups = append(rules.Groups, pr.Spec.Groups...)
		default:
			failures = append(failures, what+": a monitoring.coreos.com/v1 kind this check does not know")
			continue
		}
		seen[meta.Kind]++
		fmt.Printf("ok: %s decodes strictly into monitoring.coreos.com/v1 %s\n", what, meta.Kind)
	}
	for _, kind := range strings.Split(wantKinds, ",") {
		if kind != "" && seen[kind] == 0 {
			failures = append(failures, "no "+kind+" in the input")
		}
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n  "))
	}
	if rulesOut != "" {
		out, err := yaml.Marshal(rules)
		if err != nil {
			return err
		}
		if err := os.WriteFile(rulesOut, out, 0o644); err != nil {
			return err
		}
	}
	return nil
}
