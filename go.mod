module github.com/gatehouse/gatehouse

go 1.26

require layeh.com/radius v0.0.0-20231213012653-1006025d24f8
