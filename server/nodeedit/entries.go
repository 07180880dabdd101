package nodeedit

import "github.com/wwcluster/ww/server/config"

// AddEntries adds one entry of kind per name with f applied (f.Given must
// be set; i counts up --ipaddr); a node gets the "default" profile, when
// there is one, unless f gave --profile.
func (e *Editor) AddEntries(kind Kind, names []string, f *Fields) error {
	_, err := e.Edit(func(t *Tree) error {
		for i, name := range names {
			en := &config.Entry{}
			if kind == Node && !f.Given("profile") && t.File(Profile, "default") != "" {
				en.Profiles = []string{"default"}
			}
			if err := f.Apply(en, name, i); err != nil {
				return err
			}
			if err := t.Add(kind, name, en); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// SetEntries applies f (f.Given must be set) to the entries of kind named.
func (e *Editor) SetEntries(kind Kind, names []string, f *Fields) error {
	_, err := e.Edit(func(t *Tree) error {
		for i, name := range names {
			en, err := t.Get(kind, name)
			if err != nil {
				return err
			}
			if err := f.Apply(en, name, i); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

// DeleteEntries deletes the entries of kind named, all or none.
func (e *Editor) DeleteEntries(kind Kind, names []string) error {
	_, err := e.Edit(func(t *Tree) error {
		for _, name := range names {
			if err := t.Delete(kind, name); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}
