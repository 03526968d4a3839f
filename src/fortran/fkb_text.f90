!! Small text utilities for the file readers: splitting lines into fields and reading lines
!! of any length from a formatted file.
module fkb_text
  implicit none
  private
  public :: string_t, split_fields, read_line

  type :: string_t
    character(len=:), allocatable :: s
  end type string_t

contains

  function split_fields(line, separators) result(fields)
    !! The non-empty runs of characters not in `separators`.
    character(len=*), intent(in) :: line, separators
    type(string_t), allocatable :: fields(:)
    integer :: i, start, n
    allocate(fields(count_fields(line, separators)))
    n = 0
    i = 1
    do while (i <= len(line))
      if (index(separators, line(i:i)) > 0) then
        i = i + 1
        cycle
      end if
      start = i
      do while (i <= len(line))
        if (index(separators, line(i:i)) > 0) exit
        i = i + 1
      end do
      n = n + 1
      fields(n)%s = line(start:i - 1)
    end do
  end function split_fields

  pure integer function count_fields(line, separators)
    character(len=*), intent(in) :: line, separators
    integer :: i
    logical :: inside, sep
    count_fields = 0
    inside = .false.
    do i = 1, len(line)
      sep = index(separators, line(i:i)) > 0
      if (.not. sep .and. .not. inside) count_fields = count_fields + 1
      inside = .not. sep
    end do
  end function count_fields

  subroutine read_line(unit, line, ios)
    !! Reads one whole record of a formatted sequential file, however long.
    integer, intent(in) :: unit
    character(len=:), allocatable, intent(out) :: line
    integer, intent(out) :: ios
    character(len=4096) :: chunk
    integer :: got
    line = ''
    do
      read (unit, '(a)', advance='no', iostat=ios, size=got) chunk
      line = line // chunk(1:got)
      if (ios /= 0) exit
    end do
    if (is_iostat_eor(ios)) ios = 0
  end subroutine read_line

end module fkb_text
