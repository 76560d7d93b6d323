package runtime

import (
	"log/slog"
	"strings"
	"testing"
)

func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxLogLine)
	cases := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"lines", []string{"a\nb\n"}, []string{"a", "b"}},
		{"split writes", []string{"he", "llo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"unfinished line flushed", []string{"tail"}, []string{"tail"}},
		{"empty line", []string{"\n"}, []string{""}},
		{"long line split", []string{long + "yz\n"}, []string{long, "yz"}},
		{"long without newline", []string{long, "q"}, []string{long, "q"}},
		{"invalid utf-8", []string{"a\xffb\n"}, []string{"a?b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := newLogCapture(t)
			w := newLineWriter(slog.New(logs), slog.LevelInfo, "stdout")
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write: got %d, %v; want %d, nil", n, err, len(s))
				}
			}
			w.Flush()
			recs := logs.records()
			if len(recs) != len(tc.want) {
				t.Fatalf("got %d lines; want %d", len(recs), len(tc.want))
			}
			for i, r := range recs {
				if r.Msg != tc.want[i] || r.Attrs["fd"] != "stdout" {
					t.Errorf("line %d: got %.20q %v; want %.20q", i, r.Msg, r.Attrs, tc.want[i])
				}
			}
		})
	}
}
